"""The campaign index (``sendcloud:campaigns``): written when a campaign opens, left by its
purge and discard, pruned of campaigns whose records expired."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from producers import (
    cancel_campaign,
    discard_campaign,
    list_campaigns,
    purge_campaign,
    start_campaign,
)
from producers.campaign import campaign_key
from producers.contract import CAMPAIGNS_KEY
from tests.jobs_harness import TEMPLATE_ID, Stack, mainland
from tests.jobs_harness import stack_factory as harness_stacks


@pytest.fixture
def stack_factory(redis_url: str) -> Iterator[Callable[..., Stack]]:
    with harness_stacks(redis_url) as make:
        yield make


def _ids(stack: Stack) -> list[str]:
    return [c.campaign_id for c in list_campaigns(producer=stack.producer)]


def test_campaigns_are_listed_newest_first_with_their_progress(stack_factory):
    stack = stack_factory()
    for name, size in (("first", 3), ("second", 2500)):
        start_campaign(name, TEMPLATE_ID, [mainland(i) for i in range(size)],
                       producer=stack.producer)
    listed = list_campaigns(producer=stack.producer)
    assert [c.campaign_id for c in listed] == ["second", "first"]
    assert [(c.valid, c.chunks) for c in listed] == [(2500, 2), (3, 1)]
    assert [c.campaign_id for c in list_campaigns(limit=1, producer=stack.producer)] == ["second"]
    with pytest.raises(ValueError, match="limit: must be a positive integer"):
        list_campaigns(limit=0, producer=stack.producer)


def test_a_second_start_of_the_same_campaign_keeps_one_entry(stack_factory):
    stack = stack_factory()
    phones = [mainland(i) for i in range(5)]
    start_campaign("again", TEMPLATE_ID, phones, producer=stack.producer)
    start_campaign("again", TEMPLATE_ID, phones, producer=stack.producer)
    assert stack.redis.zcard(CAMPAIGNS_KEY) == 1


def test_purge_and_discard_remove_the_campaign_from_the_index(stack_factory):
    stack = stack_factory()
    start_campaign("to-purge", TEMPLATE_ID, [mainland(1)], producer=stack.producer)
    start_campaign("to-discard", TEMPLATE_ID, [mainland(2)], producer=stack.producer)
    discard_campaign("to-discard", producer=stack.producer)
    assert _ids(stack) == ["to-purge"]
    cancel_campaign("to-purge", producer=stack.producer)
    with stack.running(2):
        assert stack.wait_until(
            lambda: list_campaigns(producer=stack.producer)[0].finished, deadline=30)
    purge_campaign("to-purge", producer=stack.producer)
    assert _ids(stack) == []
    assert stack.redis.zcard(CAMPAIGNS_KEY) == 0


def test_a_campaign_whose_record_expired_is_dropped_by_the_reader(stack_factory):
    stack = stack_factory()
    start_campaign("old", TEMPLATE_ID, [mainland(1)], producer=stack.producer)
    start_campaign("kept", TEMPLATE_ID, [mainland(2)], producer=stack.producer)
    stack.redis.delete(campaign_key("old"))  # what its retention's expiry does
    assert _ids(stack) == ["kept"]
    assert stack.redis.zrange(CAMPAIGNS_KEY, 0, -1) == [b"kept"]
