"""`sendcloud-jobs status poll --once` against the simulator over real HTTP, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from producers.contract import EMAIL_STATUS_STREAM
from simulator import Simulator
from simulator.admin import SimulatorAdmin
from simulator.server import SimulatorServer, serve_in_thread
from worker.cli import main
from worker.email_status.poller import CURSOR_KEY

CLI = str(Path(sys.executable).with_name("sendcloud-jobs"))


@pytest.fixture
def server() -> Iterator[SimulatorServer]:
    with serve_in_thread(Simulator()) as running:
        yield running


@pytest.fixture
def cli_env(server: SimulatorServer, redis_url: str) -> dict[str, str]:
    return {
        "SENDCLOUD_BASE_URL": server.url,
        "SENDCLOUD_SMS_USER": "sim_sms_user",
        "SENDCLOUD_SMS_KEY": "sim-sms-key-0000",
        "SENDCLOUD_API_USER": "sim_api_user",
        "SENDCLOUD_API_KEY": "sim-api-key-0000",
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "WARNING",
    }


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "status", "poll", "--once", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_poll_once_publishes_all_then_nothing_then_exactly_the_changes(
    server: SimulatorServer,
    cli_env: dict[str, str],
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with SimulatorAdmin(server.url) as admin:
        seeded = admin.seed_email_status(2000)

        # First run in-process, as the console script calls it.
        for name, value in cli_env.items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()  # the in-process simulator's own log lines so far
        assert main(["status", "poll", "--once", "--json"]) == 0
        first = json.loads(capsys.readouterr().out)
        assert (first["pages"], first["calls"]) == (20, 20)
        assert (first["records_seen"], first["changes_emitted"]) == (2000, 2000)
        assert first["gap"] is None and first["cursor_advanced"] is True
        assert redis_client.xlen(EMAIL_STATUS_STREAM) == 2000

        # Second run: a separate process, human-readable summary; nothing changed.
        second = run_cli(cli_env)
        assert second.returncode == 0, second.stderr
        assert "records seen:    2000" in second.stdout
        assert "changes emitted: 0" in second.stdout
        assert "gap:             none" in second.stdout
        assert redis_client.xlen(EMAIL_STATUS_STREAM) == 2000

        moved = admin.advance_email_status(count=100, status=1)
        third = run_cli(cli_env, "--json")
        assert third.returncode == 0, third.stderr
        assert json.loads(third.stdout)["changes_emitted"] == 100

    entries = redis_client.xrange(EMAIL_STATUS_STREAM)
    assert [f[b"email_id"].decode() for _, f in entries[:2000]] == seeded
    latest = {f[b"email_id"].decode(): f[b"status"].decode() for _, f in entries[2000:]}
    assert latest == dict.fromkeys(moved, "delivered")


def test_poll_without_once_or_with_bad_days_is_a_one_line_error(cli_env: dict[str, str]) -> None:
    without_once = subprocess.run(
        [CLI, "status", "poll"], env={**os.environ, **cli_env},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert without_once.returncode == 2
    assert "pass --once" in without_once.stderr
    bad_days = run_cli(cli_env, "--days", "31")
    assert bad_days.returncode == 2
    assert "--days: must be between 1 and 30, got 31" in bad_days.stderr


def test_a_refused_poll_exits_1_and_leaves_the_cursor(
    cli_env: dict[str, str], redis_client: redis.Redis
) -> None:
    failed = run_cli({**cli_env, "SENDCLOUD_API_KEY": "wrong-key-1234"})
    assert failed.returncode == 1
    assert "poll failed, cursor unchanged" in failed.stderr
    assert "wrong-key-1234" not in failed.stderr + failed.stdout
    assert redis_client.exists(CURSOR_KEY) == 0
