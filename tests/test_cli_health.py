from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from simulator import Simulator
from simulator.server import SimulatorServer, serve_in_thread
from tests.redis_server import free_port
from worker.cli import main

CLI = str(Path(sys.executable).parent / "sendcloud-jobs")
SIM_CREDENTIALS = {
    "SENDCLOUD_SMS_USER": "sim_sms_user",
    "SENDCLOUD_SMS_KEY": "sim-sms-key-0000",
    "SENDCLOUD_API_USER": "sim_api_user",
    "SENDCLOUD_API_KEY": "sim-api-key-0000",
}


@pytest.fixture
def sim_server() -> Iterator[SimulatorServer]:
    server = serve_in_thread(Simulator())
    yield server
    server.stop()


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, sim_server: SimulatorServer
) -> pytest.MonkeyPatch:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("SENDCLOUD_BASE_URL", sim_server.url)
    for name, value in SIM_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_healthy_service_passes_every_check_and_sends_nothing(
    env: pytest.MonkeyPatch, sim_server: SimulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["health"]) == 0

    out = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in out] == [
        "redis", "redis", "redis", "redis", "mail", "sms", "sms"
    ]
    # The test's throwaway Redis keeps nothing on disk: said as a warning, not a failure.
    assert out[1].startswith("warn redis persistence none")
    assert out[2] == "ok   redis eviction    maxmemory-policy noeviction"
    assert out[3].startswith("ok   redis clock       Redis's clock is ")
    assert all(line.startswith("ok") for line in out[2:])
    assert "statusCode 411" in out[6]
    assert len(sim_server.sim.ledger) == 0  # the SMS probe has no recipient


def test_an_evicting_redis_fails_health(
    env: pytest.MonkeyPatch, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    redis_client.config_set("maxmemory-policy", "allkeys-lru")  # the test session's own server
    try:
        assert main(["health"]) == 1
    finally:
        redis_client.config_set("maxmemory-policy", "noeviction")
    err = capsys.readouterr().err
    assert err == ("sendcloud-jobs: health: redis eviction    maxmemory-policy allkeys-lru "
                   "(must be noeviction: an evicted key loses or doubles a job)\n")


@pytest.mark.parametrize(
    ("variable", "expected"),
    [
        ("SENDCLOUD_API_KEY", "mail api: apiUser/apiKey refused by SendCloud"),
        ("SENDCLOUD_SMS_KEY", "sms api: smsUser/smsKey refused by SendCloud"),
    ],
)
def test_wrong_key_fails_with_one_line(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, expected: str
) -> None:
    env.setenv(variable, "not-the-key")

    assert main(["health"]) == 1

    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"sendcloud-jobs: health: {expected}")
    assert "not-the-key" not in err


def test_redis_down_fails_even_for_the_liveness_check(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("REDIS_URL", f"redis://:secret@127.0.0.1:{free_port()}/0")

    assert main(["health", "--redis-only"]) == 1

    err = capsys.readouterr().err
    assert err.startswith("sendcloud-jobs: health: redis: redis://:***@127.0.0.1:")
    assert "secret" not in err


def test_liveness_does_not_need_credentials(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.delenv("SENDCLOUD_API_KEY")

    assert main(["health", "--redis-only", "--quiet"]) == 0
    assert capsys.readouterr().out == ""


def test_missing_credential_names_the_variable_without_traceback(
    env: pytest.MonkeyPatch, redis_url: str
) -> None:
    env.delenv("SENDCLOUD_SMS_KEY")

    proc = subprocess.run([CLI, "health"], capture_output=True, text=True)

    assert proc.returncode == 2
    assert proc.stderr == "sendcloud-jobs: error: SENDCLOUD_SMS_KEY: is required but not set\n"


def test_help_lists_every_command() -> None:
    proc = subprocess.run([CLI, "--help"], capture_output=True, text=True)

    assert proc.returncode == 0
    for command in ("enqueue", "results", "dlq", "health", "simulator"):
        assert f"    {command}" in proc.stdout
