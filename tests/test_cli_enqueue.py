from __future__ import annotations

import json

import pytest
import redis
from dramatiq.message import Message

from producers.contract import CODES_QUEUE, MEMBERS_QUEUE, SEND_SMS_ACTOR, SMS_QUEUE
from worker.cli import main


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)


def queued(client: redis.Redis, queue: str) -> list[Message]:
    return [Message.decode(data) for data in client.hvals(f"dramatiq:{queue}.msgs")]


def test_sms_prints_the_key_and_enqueues_the_validated_job(
    redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["enqueue", "sms", "--template-id", "7", "--phone", "13800000000,+8613900000000"]
    argv += ["--phone", "13700000000", "--var", "name=lucy", "--tag", "team=ops"]

    assert main(argv) == 0

    key = capsys.readouterr().out.strip()
    assert key.startswith("sms-")
    [message] = queued(redis_client, SMS_QUEUE)
    assert message.actor_name == SEND_SMS_ACTOR
    job = message.args[0]
    assert job["key"] == key
    assert job["phones"] == ["13800000000", "13900000000", "13700000000"]
    assert job["vars"] == {"name": "lucy"}
    assert job["tag"] == {"team": "ops"}


def test_given_key_is_used_and_a_different_payload_is_refused(
    redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["enqueue", "code", "--phone", "13800000000", "--sign-id", "3", "--key", "login-1"]

    assert main([*base, "--code", "1234"]) == 0
    assert main([*base, "--code", "5678"]) == 2

    captured = capsys.readouterr()
    assert captured.out == "login-1\n"
    assert captured.err == (
        "sendcloud-jobs: error: idempotency_key 'login-1' was already used with a different "
        "payload\n"
    )
    [message] = queued(redis_client, CODES_QUEUE)
    assert message.args[0]["code"] == "1234"


def test_invalid_field_is_one_line_and_nothing_is_enqueued(
    redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["enqueue", "voice", "--phone", "12345", "--code", "1234"]) == 2

    err = capsys.readouterr().err
    assert err.startswith("sendcloud-jobs: error: phone: must be a mainland mobile number")
    assert err.count("\n") == 1
    assert queued(redis_client, CODES_QUEUE) == []


def test_members_update_carries_names_vars_and_new_addresses(
    redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["enqueue", "members", "update", "--address", "news@lists.example.com"]
    argv += ["--member", "a@example.com,b@example.com", "--new-member", "a2@example.com"]
    argv += ["--new-member", "b2@example.com", "--name", "Ann", "--name", "Bob"]
    argv += ["--vars", '{"city": "Paris"}', "--vars", '{"city": "Rome"}']

    assert main(argv) == 0

    key = capsys.readouterr().out.strip()
    [message] = queued(redis_client, MEMBERS_QUEUE)
    job = message.args[0]
    assert (job["key"], job["op"]) == (key, "update")
    assert job["new_members"] == ["a2@example.com", "b2@example.com"]
    assert job["names"] == ["Ann", "Bob"]
    assert job["vars"] == [{"city": "Paris"}, {"city": "Rome"}]


def test_wait_without_a_worker_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["enqueue", "members", "delete", "--address", "news@lists.example.com"]

    assert main([*argv, "--member", "a@example.com", "--wait", "0.2"]) == 1

    captured = capsys.readouterr()
    key = captured.out.strip()
    assert captured.err == (
        f"sendcloud-jobs: no result for {key} after 0.2 s (state: queued); is a worker running?\n"
    )


def test_results_get_prints_the_record(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["enqueue", "voice", "--phone", "13800000000", "--code", "4321", "--key", "v-1"]
    assert main(argv) == 0
    capsys.readouterr()

    assert main(["results", "get", "v-1"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["kind"], record["state"]) == ("voice_code", "queued")

    assert main(["results", "get", "nope"]) == 1
    assert (
        capsys.readouterr().err == "sendcloud-jobs: no job with key 'nope' (unknown or expired)\n"
    )


@pytest.mark.parametrize("prefix", [["enqueue"], []])
def test_code_enqueues_on_the_codes_queue_with_or_without_enqueue(
    prefix: list[str], redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [*prefix, "code", "--phone", "13800000000", "--code", "4321", "--sign-id", "3"]
    assert main(argv) == 0
    key = capsys.readouterr().out.strip()
    [message] = queued(redis_client, CODES_QUEUE)
    assert message.args[0]["key"] == key
    assert (message.args[0]["code"], message.args[0]["sign_id"]) == ("4321", 3)
