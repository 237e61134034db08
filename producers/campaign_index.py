"""The list of campaigns, newest first: the sorted set ``sendcloud:campaigns``.

A campaign enters it when it opens (the same script that creates its record, scored by Redis's
clock) and leaves it when it is purged or discarded. A campaign whose record expired (its
retention ran out) is dropped from the index by the first reader that meets it.
"""

from __future__ import annotations

from producers.campaign import campaign_key
from producers.campaign_report import CampaignNotFound, CampaignStatus, campaign_status
from producers.contract import CAMPAIGNS_KEY
from producers.producer import Producer, default_producer
from producers.replies import reply_text

# KEYS: the index, the campaign's record. ARGV: campaign id. Only a campaign whose record is
# gone leaves: one started again under the id in between keeps its place.
_DROP_EXPIRED_LUA = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
return redis.call('ZREM', KEYS[1], ARGV[1])
"""


def list_campaigns(*, limit: int = 50, producer: Producer | None = None) -> list[CampaignStatus]:
    """The ``limit`` newest campaigns with their progress, newest first."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit: must be a positive integer, got {limit!r}")
    producer = producer or default_producer()
    found: list[CampaignStatus] = []
    newest: list[bytes] = producer.redis.zrevrange(CAMPAIGNS_KEY, 0, limit - 1)  # type: ignore[assignment]
    for raw in newest:
        campaign_id = reply_text(raw)
        try:
            found.append(campaign_status(campaign_id, producer=producer))
        except CampaignNotFound:
            producer.redis.eval(_DROP_EXPIRED_LUA, 2, CAMPAIGNS_KEY, campaign_key(campaign_id),
                                campaign_id)
    return found
