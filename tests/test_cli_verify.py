"""``sendcloud-jobs verify``: start, status, check and cancel from a shell; the code never shown."""

from __future__ import annotations

import json

import pytest
import redis

from producers.verification import unseal
from worker.cli import main

SECRET = "cli-verify-secret-0123456789"


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("SENDCLOUD_VERIFY_SECRET", SECRET)


def queued_code(client: redis.Redis) -> str:
    [raw] = client.hvals("dramatiq:sendcloud.codes.msgs")
    payload = json.loads(raw)["args"][0]
    return unseal(SECRET.encode(), payload["verification_id"], payload["sealed_code"])


def test_start_status_check(capsys: pytest.CaptureFixture[str], redis_client: redis.Redis) -> None:
    assert main(["verify", "start", "--phone", "13800000081", "--sign-id", "1"]) == 0
    started = json.loads(capsys.readouterr().out)
    code = queued_code(redis_client)
    assert code not in json.dumps(started)

    assert main(["verify", "start", "--phone", "13800000081", "--sign-id", "1"]) == 1
    assert "verification refused (cooldown)" in capsys.readouterr().err

    assert main(["verify", "status", "--phone", "13800000081"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["id"], status["status"], status["attempts_left"]) == (started["id"],
                                                                        "pending", 5)
    assert code not in json.dumps(status)

    assert main(["verify", "check", "--phone", "13800000081", "--code", code]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "approved"
    assert main(["verify", "check", "--phone", "13800000081", "--code", code]) == 1
    assert json.loads(capsys.readouterr().out)["status"] == "not_found"


def test_without_the_secret_it_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SENDCLOUD_VERIFY_SECRET")
    assert main(["verify", "start", "--phone", "13800000082", "--sign-id", "1"]) == 2
    assert capsys.readouterr().err == (
        "sendcloud-jobs: error: SENDCLOUD_VERIFY_SECRET: is required (at least 16 characters) "
        "to hash and seal verification codes\n")
