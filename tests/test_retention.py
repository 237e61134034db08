"""Retention: result streams trimmed by age, campaign data for SENDCLOUD_CAMPAIGN_TTL, purge."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
import redis

from producers import (
    CampaignNotFinished,
    CampaignNotFound,
    campaign_report,
    purge_campaign,
    start_campaign,
)
from producers.campaign import campaign_key
from producers.contract import SMS_RESULTS_STREAM
from producers.errors import SettingError
from tests.jobs_harness import TEMPLATE_ID, Stack, mainland, make_stack
from worker.cli import main
from worker.jobs.idempotency import JobLedger

DAY = 86400


@pytest.fixture
def stack(redis_url: str) -> Iterator[Stack]:
    made = make_stack(redis_url)
    yield made
    made.producer.close()
    made.redis.close()


def test_result_streams_lose_entries_older_than_their_max_age(redis_client: redis.Redis) -> None:
    # MINID ~ trims whole stream nodes; one entry a node makes the check exact.
    redis_client.config_set("stream-node-max-entries", 1)
    try:
        now_ms = int(redis_client.time()[0]) * 1000
        old = {redis_client.xadd(SMS_RESULTS_STREAM, {"kind": "sms"},
                                 id=f"{now_ms - d * DAY * 1000}-0").decode()
               for d in (45, 40, 31)}  # fmt: skip
        recent = redis_client.xadd(SMS_RESULTS_STREAM, {"kind": "sms"},
                                   id=f"{now_ms - DAY * 1000}-0").decode()
        ledger = JobLedger(redis_client, lease=10, ttl=3600, maxlen=1000, max_age=30 * DAY)
        claim = ledger.claim("k1", "m1", kind="sms")
        entry = ledger.finish("k1", claim.token, outcome="sent", stream=SMS_RESULTS_STREAM,
                              record={"key": "k1", "kind": "sms", "outcome": "sent"})
    finally:
        redis_client.config_set("stream-node-max-entries", 100)
    ids = {i.decode() for i, _ in redis_client.xrange(SMS_RESULTS_STREAM)}
    assert ids == {recent, entry} and not ids & old


def test_a_finished_campaign_can_be_purged_and_a_running_one_cannot(stack: Stack) -> None:
    numbers = [mainland(i) for i in range(2500)]
    start_campaign("old", TEMPLATE_ID, numbers, producer=stack.producer)
    with pytest.raises(CampaignNotFinished):
        purge_campaign("old", producer=stack.producer)
    with stack.running():
        stack.wait_until(lambda: stack.redis.hexists(campaign_key("old"), "finished_at"), 60)

    assert purge_campaign("old", producer=stack.producer) == 2
    assert stack.redis.keys("sendcloud:campaign:old*") == []
    assert stack.redis.keys("sendcloud:idem:campaign:old:*") == []
    with pytest.raises(CampaignNotFound):
        campaign_report("old", io.StringIO(), producer=stack.producer)
    with pytest.raises(CampaignNotFound):
        purge_campaign("old", producer=stack.producer)


def test_purge_from_the_cli_needs_yes(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    assert main(["campaign", "purge", "x"]) == 2
    assert "add --yes" in capsys.readouterr().err
    assert main(["campaign", "purge", "x", "--yes"]) == 2
    assert "names no known campaign" in capsys.readouterr().err


def test_campaign_data_lives_for_the_campaign_ttl(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENDCLOUD_CAMPAIGN_TTL", "7200")
    start_campaign("short", TEMPLATE_ID, [mainland(1)], producer=stack.producer)
    assert 7000 < stack.redis.ttl(campaign_key("short")) <= 7200
    monkeypatch.setenv("SENDCLOUD_CAMPAIGN_TTL", "soon")
    with pytest.raises(SettingError, match="SENDCLOUD_CAMPAIGN_TTL: must be whole seconds"):
        start_campaign("bad", TEMPLATE_ID, [mainland(2)], producer=stack.producer)
