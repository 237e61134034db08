"""A web app imports producers with only dramatiq and redis installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Loads the whole package, builds a producer (its RedisBroker does not connect until used)
# and reports which forbidden top-level packages ended up imported.
PROBE = """
import json, sys
import producers
producers.Producer(redis_url="redis://127.0.0.1:1/0").close()
forbidden = ("worker", "httpx", "tenacity", "structlog", "simulator")
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & set(forbidden))))
"""


def run_probe(prelude: str = "") -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", prelude + PROBE], cwd=ROOT, capture_output=True, text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    imported: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return imported


def test_importing_producers_does_not_import_the_worker_or_its_dependencies() -> None:
    assert run_probe() == []


def test_producers_import_when_the_worker_dependencies_are_missing(tmp_path: Path) -> None:
    # Shadow the worker-only packages with modules that fail on import, as on a web host.
    for name in ("httpx", "tenacity", "worker"):
        (tmp_path / f"{name}.py").write_text(f"raise ImportError('{name} is not installed')\n")
    assert run_probe(f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n") == []


def test_the_probe_notices_a_forbidden_import() -> None:
    assert run_probe("import httpx\n") == ["httpx"]
