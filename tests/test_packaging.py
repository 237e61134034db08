"""The files a newcomer meets: the lock the venv and image install, ignored build output."""

from __future__ import annotations

import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "docker/requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_the_lock_pins_every_dependency_and_this_venv_runs_it() -> None:
    """`make` installs with the lock as constraints, so what the tests run is what is pinned."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    pins = lock()
    for spec in declared:
        requirement = Requirement(spec)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not in docker/requirements.lock; run make lock"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} vs {spec}"
        assert metadata.version(requirement.name) == pins[name], (
            f"{name}: the venv has {metadata.version(requirement.name)}, the lock {pins[name]}"
        )


def test_build_output_is_ignored() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "build/lib/x.py", "sendcloud_jobs.egg-info/PKG-INFO"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert ignored.stdout.split() == ["build/lib/x.py", "sendcloud_jobs.egg-info/PKG-INFO"]


def test_make_targets_the_docs_name_have_recipes() -> None:
    for target in ("demo", "test", "up", "bench", "chaos-full", "lock"):
        dry = subprocess.run(
            ["make", "-n", target], cwd=ROOT, capture_output=True, text=True
        )
        assert dry.returncode == 0, dry.stderr
        assert dry.stdout.strip(), f"make {target} does nothing"
