"""The README's ResultReader example, run as written against a real Redis."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import redis

import producers
from producers.contract import SMS_RESULTS_STREAM
from worker.jobs.results import create_result_streams

README = Path(__file__).resolve().parent.parent / "README.md"


def example() -> str:
    text = README.read_text()
    section = text[text.index("## Reading results") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


class Handled(Exception):
    pass


def run_example(monkeypatch: pytest.MonkeyPatch, redis_url: str, stop_after: int) -> list[Any]:
    monkeypatch.setenv("REDIS_URL", redis_url)
    seen: list[Any] = []

    def handle(fields: dict[str, Any]) -> None:
        seen.append(fields)
        if len(seen) == stop_after:
            raise Handled

    with pytest.raises(Handled):
        exec(example(), {"handle": handle})
    return seen


def test_the_readme_reader_reads_each_record_and_acknowledges_what_it_handled(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, redis_client: redis.Redis
) -> None:
    create_result_streams(redis_client)
    for i in range(150):
        redis_client.xadd(SMS_RESULTS_STREAM, {"key": f"k{i}", "kind": "sms", "outcome": "sent",
                                               "attempts": "1"})  # fmt: skip

    seen = run_example(monkeypatch, redis_url, stop_after=150)

    assert [f["key"] for f in seen] == [f"k{i}" for i in range(150)]
    assert seen[0]["attempts"] == 1
    # The first batch of 100 was acknowledged; the record being handled when it stopped was not.
    pending = redis_client.xpending(SMS_RESULTS_STREAM, "billing")["pending"]
    assert pending == 50

    # Started again, it first handles what it had read but not acknowledged.
    again = run_example(monkeypatch, redis_url, stop_after=1)
    assert again[0]["key"] == "k100"


def test_the_readme_reader_on_a_redis_without_workers_says_so(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, redis_client: redis.Redis
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    with pytest.raises(producers.StreamNotFound, match="no worker has started against it"):
        exec(example(), {"handle": print})
    assert redis_client.exists(SMS_RESULTS_STREAM) == 0
