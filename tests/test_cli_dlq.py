from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from producers.contract import SMS_QUEUE
from tests.test_dlq import dead_letter_one
from worker.broker import dead_letters as dlq
from worker.cli import main


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> Iterator[RedisBroker]:
    monkeypatch.setenv("REDIS_URL", redis_url)
    broker = RedisBroker(url=redis_url)
    broker.add_middleware(dlq.DeadLetterReasons())
    yield broker
    broker.close()


def test_list_shows_id_actor_key_and_reason(
    broker: RedisBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_letter_one(broker, "cli-1", [])
    [letter] = dlq.list_dead_letters(broker.client)

    assert main(["dlq", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "queue": SMS_QUEUE,
        "message_id": letter.message_id,
        "actor": "fails",
        "key": "cli-1",
        "dead_at": json.loads(json.dumps(dlq_time(letter.dead_at))),
        "retries": 1,
        "job_state": None,
        "reason": "InvalidRequestError: template does not exist (statusCode 431 from smsapi/send)",
    }
    assert main(["dlq", "list", "--queue", "sms"]) == 0
    table = capsys.readouterr().out
    assert letter.message_id in table
    assert "InvalidRequestError" in table


def dlq_time(epoch: float) -> str:
    from worker.cli.dlq import _when

    return _when(epoch)


def test_replay_moves_the_message_back_to_its_queue(
    broker: RedisBroker, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_letter_one(broker, "cli-2", [])

    assert main(["dlq", "replay", "--queue", "sendcloud.sms"]) == 0

    out = capsys.readouterr().out
    assert out.endswith("1 message(s) replayed, 0 kept\n")
    assert "key=cli-2 -> sendcloud.sms" in out
    assert redis_client.hlen(f"dramatiq:{SMS_QUEUE}.msgs") == 1
    assert dlq.list_dead_letters(redis_client) == []


def test_purge_needs_yes(broker: RedisBroker, capsys: pytest.CaptureFixture[str]) -> None:
    dead_letter_one(broker, "cli-3", [])

    assert main(["dlq", "purge"]) == 2
    assert "add --yes to confirm" in capsys.readouterr().err
    assert len(dlq.list_dead_letters(broker.client)) == 1

    assert main(["dlq", "purge", "--yes"]) == 0
    assert capsys.readouterr().out == "1 dead letter(s) purged\n"
    assert dlq.list_dead_letters(broker.client) == []


def test_unknown_queue_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["dlq", "list", "--queue", "bogus"])

    assert exit_info.value.code == 2
    assert "unknown queue 'bogus'" in capsys.readouterr().err
