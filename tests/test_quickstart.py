"""The README's quickstart, run as written: `make up` (honcho, the Procfile and local.env),
then the enqueue commands from a second shell, against this session's throwaway Redis.

Only what must differ on a shared machine is changed in a copy of local.env: the Redis
database and the ports (simulator, metrics and the receiver's), so a developer's own `make up`
is untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).parent / "sendcloud-jobs")


def env_file_values(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


@pytest.fixture
def quickstart(
    redis_db: Callable[[int], str], tmp_path: Path
) -> Iterator[dict[str, str]]:
    if shutil.which("make") is None:
        pytest.fail("make is not installed; the quickstart needs it")
    sim_port = free_port()
    settings = env_file_values(ROOT / "local.env")
    settings.update(
        REDIS_URL=redis_db(7),
        SENDCLOUD_BASE_URL=f"http://127.0.0.1:{sim_port}",
        SENDCLOUD_SIMULATOR_PORT=str(sim_port),
        SENDCLOUD_METRICS_PORT=str(free_port()),
        SENDCLOUD_CODES_METRICS_PORT=str(free_port()),
        SENDCLOUD_STATUS_METRICS_PORT=str(free_port()),
        PORT=str(free_port()),  # the Procfile's `web` entry
    )
    env_file = tmp_path / "quickstart.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    log = (tmp_path / "honcho.log").open("w")
    # A PATH without the venv, as in a new user's shell: `make up` must not need it.
    path = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if ".venv" not in p
    )
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PATH"] = path
    proc = subprocess.Popen(
        ["make", "up", f"ENV_FILE={env_file}"], cwd=ROOT, env=env, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{settings['SENDCLOUD_BASE_URL']}/smsapi/timestamp/get")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"make up did not start:\n{(tmp_path / 'honcho.log').read_text()}")
                time.sleep(0.2)
        yield {**os.environ, **settings}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=90)


def test_the_quickstart_runs_as_written(quickstart: dict[str, str]) -> None:
    code = cli(quickstart, "code", "--phone", "13800000000", "--code", "4321", "--sign-id", "1",
               "--wait", "30")  # fmt: skip
    assert code.returncode == 0, code.stderr
    key, record = code.stdout.splitlines()
    assert json.loads(record)["outcome"] == "sent"
    assert key.startswith("code-")

    # The README's examples use the template and the list the Procfile's simulator seeds.
    sms = cli(quickstart, "sms", "--template-id", "12345", "--phone", "13800000001",
              "--var", "name=Lucy", "--wait", "30")  # fmt: skip
    assert sms.returncode == 0, sms.stdout + sms.stderr
    members = cli(quickstart, "members", "add", "--address", "news@maillist.sendcloud.org",
                  "--member", "a@example.com", "--wait", "30")  # fmt: skip
    assert members.returncode == 0, members.stdout + members.stderr

    # --wait exits by the outcome: an unknown template fails, and nothing went out.
    failed = cli(quickstart, "sms", "--template-id", "999", "--phone", "13800000001",
                 "--wait", "30")  # fmt: skip
    assert failed.returncode == 3
    assert json.loads(failed.stdout.splitlines()[1])["outcome"] == "failed"

    tail = cli(quickstart, "results", "tail", "--stream", "sms")
    assert tail.returncode == 0
    assert key in tail.stdout
