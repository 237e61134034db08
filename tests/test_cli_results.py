from __future__ import annotations

import json
import threading

import pytest
import redis

from producers.contract import MEMBERS_RESULTS_STREAM, SMS_RESULTS_STREAM
from worker.cli import main
from worker.cli.results import tail


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)


def add_results(client: redis.Redis, stream: str, count: int) -> list[str]:
    """Entries shaped like the workers' (flat fields, lists as JSON text)."""
    ids = []
    for i in range(count):
        entry = {"key": f"k-{i}", "kind": "sms", "outcome": "sent", "phones": '["13800000000"]'}
        ids.append(client.xadd(stream, entry).decode())
    return ids


def test_tail_prints_the_last_entries_oldest_first(
    redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = add_results(redis_client, SMS_RESULTS_STREAM, 5)

    assert main(["results", "tail", "--count", "2"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ids[3:]
    assert lines[1].endswith('kind=sms outcome=sent key=k-4 phones=["13800000000"]')


def test_tail_json_and_named_streams(
    redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    [entry_id] = add_results(redis_client, MEMBERS_RESULTS_STREAM, 1)

    assert main(["results", "tail", "--stream", "members", "--json"]) == 0

    record = json.loads(capsys.readouterr().out)
    assert record == {
        "id": entry_id, "key": "k-0", "kind": "sms", "outcome": "sent", "phones": ["13800000000"],
    }  # fmt: skip


def test_follow_prints_entries_added_later(
    redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    add_results(redis_client, SMS_RESULTS_STREAM, 3)
    later = threading.Timer(0.2, add_results, (redis_client, SMS_RESULTS_STREAM, 1))
    later.start()

    printed = tail(redis_client, SMS_RESULTS_STREAM, count=0, follow=True, max_batches=1)

    later.join()
    assert printed == 1
    assert capsys.readouterr().out.count("\n") == 1


def test_group_reads_and_acknowledges_only_with_ack(
    redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    add_results(redis_client, SMS_RESULTS_STREAM, 3)
    base = ["results", "tail", "--group", "ops", "--consumer", "me", "--count", "2"]

    assert main(base) == 0
    assert redis_client.xpending(SMS_RESULTS_STREAM, "ops")["pending"] == 2
    assert main([*base, "--ack"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[-2] for line in lines] == ["key=k-0", "key=k-1", "key=k-2"]
    assert redis_client.xpending(SMS_RESULTS_STREAM, "ops")["pending"] == 2  # k-2 acked


def test_usage_mistakes_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["results", "tail", "--ack"]) == 2
    assert capsys.readouterr().err == "sendcloud-jobs: error: --ack: needs --group\n"
