"""The worker's claim / release / finish on real Redis: states, leases, takeovers, one record."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import pytest
import redis

from producers.contract import RECONCILE_KEY, SMS_RESULTS_STREAM
from producers.idempotency import IdempotencyStore, payload_hash, record_key
from tests.jobs_harness import stream_records
from worker.jobs.idempotency import (
    JobLedger,
    deployment_namespace,
    send_request_id,
    window_left,
)
from worker.settings import ConfigurationError, Settings

T0 = 1_700_000_000.0
LEASE = 30.0


@pytest.fixture
def make_ledger(redis_client: redis.Redis) -> Callable[..., JobLedger]:
    def make(lease: float = LEASE) -> JobLedger:
        return JobLedger(redis_client, lease=lease, ttl=86400, maxlen=1000)

    return make


@pytest.fixture
def ledger(make_ledger: Callable[..., JobLedger]) -> JobLedger:
    return make_ledger()


def reserve(client: redis.Redis, key: str) -> None:
    IdempotencyStore(client).reserve(key, payload_hash({"key": key, "phone": "1"}), "code")


def record(key: str, outcome: str = "sent") -> dict[str, object]:
    return {"key": key, "kind": "code", "outcome": outcome, "sms_ids": ["a$1"], "attempts": 1}


def test_claim_moves_queued_to_in_flight_with_owner_and_lease(
    ledger: JobLedger, redis_client: redis.Redis
) -> None:
    reserve(redis_client, "k1")
    claim = ledger.claim("k1", "m1", T0, kind="code")
    assert (claim.status, claim.attempts, claim.uncertain_since, claim.takeover) == (
        "claimed", 1, None, False,
    )
    stored = ledger.get("k1")
    assert stored["state"] == "in_flight"
    assert stored["owner"] == claim.token == "m1:1"
    assert float(stored["lease_until"]) == T0 + LEASE
    assert float(stored["first_attempt_at"]) == T0
    assert stored["hash"]  # the producer's fields are kept


def test_another_message_is_busy_while_the_lease_lives(ledger: JobLedger) -> None:
    ledger.claim("k1", "m1", T0, kind="code")
    busy = ledger.claim("k1", "m2", T0 + 10, kind="code")
    assert busy.status == "busy"
    assert busy.busy_for == pytest.approx(LEASE - 10)
    assert ledger.get("k1")["owner"] == "m1:1"


def test_redelivery_of_the_same_message_takes_over_and_becomes_uncertain(
    ledger: JobLedger,
) -> None:
    ledger.claim("k1", "m1", T0, kind="code")
    again = ledger.claim("k1", "m1", T0 + 5, kind="code")
    assert again.status == "claimed"
    assert again.takeover
    assert again.attempts == 2
    # The attempt that died started at T0; its outcome is unknown.
    assert again.uncertain_since == T0
    stored = ledger.get("k1")
    assert float(stored["first_attempt_at"]) == T0
    assert float(stored["attempt_started_at"]) == T0 + 5


def test_expired_lease_lets_another_message_take_over_keeping_the_earliest_start(
    ledger: JobLedger,
) -> None:
    ledger.claim("k1", "m1", T0, kind="code")
    ledger.claim("k1", "m1", T0 + 100, kind="code")  # takeover: uncertain since T0
    late = ledger.claim("k1", "m2", T0 + 100 + LEASE + 1, kind="code")
    assert late.status == "claimed" and late.takeover
    assert late.uncertain_since == T0
    assert ledger.get("k1")["owner"] == late.token == "m2:3"


def test_release_returns_to_queued_and_marks_uncertainty_only_when_asked(
    ledger: JobLedger, redis_client: redis.Redis
) -> None:
    reserve(redis_client, "k1")
    first = ledger.claim("k1", "m1", T0, kind="code")
    assert ledger.release("k1", first.token, T0 + 1, uncertain=False, error="ServerError")
    stored = ledger.get("k1")
    assert stored["state"] == "queued" and "uncertain_since" not in stored
    assert stored["last_error"] == "ServerError"

    second = ledger.claim("k1", "m1", T0 + 10, kind="code")
    assert ledger.release("k1", second.token, T0 + 11, uncertain=True)
    assert float(ledger.get("k1")["uncertain_since"]) == T0 + 10

    later = ledger.claim("k1", "m1", T0 + 20, kind="code")
    assert later.uncertain_since == T0 + 10 and not later.takeover
    assert later.attempts == 3


def test_release_with_refund_gives_the_attempt_back(ledger: JobLedger) -> None:
    claim = ledger.claim("k1", "m1", T0, kind="code")
    ledger.release("k1", claim.token, T0, uncertain=False, refund=True)
    assert ledger.claim("k1", "m1", T0 + 1, kind="code").attempts == 1


def test_release_and_finish_by_a_non_owner_do_nothing(
    ledger: JobLedger, redis_client: redis.Redis
) -> None:
    ledger.claim("k1", "m1", T0, kind="code")
    assert not ledger.release("k1", "m2:1", T0, uncertain=False)
    assert ledger.finish("k1", "m2:1", T0, outcome="sent", stream=SMS_RESULTS_STREAM,
                         record=record("k1")) is None
    assert ledger.get("k1")["state"] == "in_flight"
    assert redis_client.xlen(SMS_RESULTS_STREAM) == 0


def test_finish_writes_state_result_and_exactly_one_stream_entry(
    ledger: JobLedger, redis_client: redis.Redis
) -> None:
    reserve(redis_client, "k1")
    claim = ledger.claim("k1", "m1", T0, kind="code")
    entry = ledger.finish("k1", claim.token, T0 + 1, outcome="sent", stream=SMS_RESULTS_STREAM,
                          record=record("k1"))
    assert entry is not None
    # The same finish again (its WAIT came short) answers the first entry and writes nothing;
    # another token's finish and a later claim are refused.
    assert ledger.finish("k1", claim.token, T0 + 2, outcome="failed", stream=SMS_RESULTS_STREAM,
                         record=record("k1")) == entry
    assert ledger.finish("k1", "m1:2", T0 + 2, outcome="sent", stream=SMS_RESULTS_STREAM,
                         record=record("k1")) is None
    final = ledger.claim("k1", "m9", T0 + 3, kind="code")
    assert (final.status, final.final_state) == ("final", "done")

    stored = ledger.get("k1")
    assert stored["state"] == "done"
    assert json.loads(stored["result"])["sms_ids"] == ["a$1"]
    [fields] = stream_records(redis_client, SMS_RESULTS_STREAM)
    assert fields == {"key": "k1", "kind": "code", "outcome": "sent", "sms_ids": ["a$1"],
                      "attempts": 1}
    assert IdempotencyStore(redis_client).get_result("k1")["outcome"] == "sent"


@pytest.mark.parametrize(("outcome", "state"), [
    ("failed", "failed"), ("expired", "expired"), ("needs_review", "needs_review"),
    ("duplicate", "done"), ("partial", "done"), ("done", "done"),
])
def test_every_outcome_maps_to_a_final_state(ledger: JobLedger, outcome: str, state: str) -> None:
    claim = ledger.claim("k1", "m1", T0, kind="code")
    ledger.finish("k1", claim.token, T0, outcome=outcome, stream=SMS_RESULTS_STREAM,
                  record=record("k1", outcome))
    assert ledger.claim("k1", "m2", T0, kind="code").final_state == state


def test_a_missing_record_is_recreated_by_the_claim(
    ledger: JobLedger, redis_client: redis.Redis
) -> None:
    claim = ledger.claim("gone", "m1", T0, kind="sms")
    assert claim.status == "claimed"
    stored = ledger.get("gone")
    assert stored["kind"] == "sms" and "recreated_at" in stored
    assert 0 < int(redis_client.ttl("sendcloud:idem:gone")) <= 86400


def test_send_request_id_is_stable_plain_keys_kept_others_hashed() -> None:
    assert send_request_id("code-abc_1.2:3") == "code-abc_1.2:3"
    odd = send_request_id("key with spaces/and#marks")
    assert len(odd) == 64 and odd == send_request_id("key with spaces/and#marks")
    assert len(send_request_id("x" * 129)) == 64
    assert send_request_id("x" * 128) == "x" * 128


def test_window_left_counts_down_from_the_earliest_uncertain_attempt() -> None:
    assert window_left(None, T0, 300) is None
    assert window_left(T0, T0 + 100, 300) == pytest.approx(3600 - 300 - 100)
    assert window_left(T0, T0 + 3400, 300) == pytest.approx(-100)


def test_job_settings_are_read_from_the_environment() -> None:
    settings = Settings.from_env({
        "SENDCLOUD_JOB_MAX_ATTEMPTS": "4", "SENDCLOUD_RETRY_BASE_DELAY": "0.5",
        "SENDCLOUD_RETRY_MAX_DELAY": "9", "SENDCLOUD_CALL_ATTEMPTS": "2",
        "SENDCLOUD_JOB_LEASE": "30", "SENDCLOUD_DEDUP_SAFETY_MARGIN": "600",
        "SENDCLOUD_PAUSE_SECONDS": "45", "SENDCLOUD_BROKER_HEARTBEAT_TIMEOUT": "2",
        "SENDCLOUD_BROKER_MAINTENANCE_CHANCE": "50000",
    })
    assert (settings.job_max_attempts, settings.retry_base_delay, settings.retry_max_delay,
            settings.call_attempts, settings.job_lease, settings.dedup_safety_margin,
            settings.pause_seconds, settings.broker_heartbeat_timeout,
            settings.broker_maintenance_chance) == (4, 0.5, 9.0, 2, 30.0, 600.0, 45.0, 2.0, 50000)
    with pytest.raises(ConfigurationError, match="SENDCLOUD_DEDUP_SAFETY_MARGIN"):
        Settings.from_env({"SENDCLOUD_DEDUP_SAFETY_MARGIN": "3600"})
    with pytest.raises(ConfigurationError, match="SENDCLOUD_JOB_MAX_ATTEMPTS"):
        Settings.from_env({"SENDCLOUD_JOB_MAX_ATTEMPTS": "0"})


def test_claim_reports_the_pause_it_was_asked_about(
    ledger: JobLedger, redis_client: redis.Redis
) -> None:
    reserve(redis_client, "k1")
    reserve(redis_client, "k2")
    assert ledger.claim("k1", "m1", T0, kind="code", pause_key="sendcloud:pause:u").paused_for == 0
    redis_client.set("sendcloud:pause:u", "1", px=30_000)
    claim = ledger.claim("k2", "m2", T0, kind="code", pause_key="sendcloud:pause:u")
    assert claim.status == "claimed" and 29 < claim.paused_for <= 30


def test_a_recreated_record_is_uncertain_since_the_job_was_enqueued(ledger: JobLedger) -> None:
    # No record: its TTL ran out while a copy of the job waited, so an earlier copy may have sent.
    claim = ledger.claim("gone", "m9", T0, kind="code", enqueued_at=T0 - 120)
    assert claim.status == "claimed" and claim.uncertain_since == T0 - 120
    assert "recreated_at" in ledger.get("gone")


def test_a_stale_attempt_of_the_same_message_is_fenced_off(
    ledger: JobLedger, redis_client: redis.Redis
) -> None:
    """A stalled attempt whose message was delivered again can neither release nor finish."""
    reserve(redis_client, "k1")
    stale = ledger.claim("k1", "m1", T0, kind="code")
    fresh = ledger.claim("k1", "m1", T0 + 90, kind="code")  # redelivered copy takes over
    assert fresh.takeover and fresh.token != stale.token
    assert not ledger.check("k1", stale.token, T0 + 91).held
    assert not ledger.release("k1", stale.token, T0 + 91, uncertain=False, error="ServerError")
    assert ledger.finish("k1", stale.token, T0 + 91, outcome="failed",
                         stream=SMS_RESULTS_STREAM, record=record("k1", "failed")) is None
    assert ledger.check("k1", fresh.token, T0 + 92).held
    assert ledger.finish("k1", fresh.token, T0 + 92, outcome="sent",
                         stream=SMS_RESULTS_STREAM, record=record("k1")) is not None
    assert ledger.get("k1")["state"] == "done"
    assert [r["outcome"] for r in stream_records(redis_client, SMS_RESULTS_STREAM)] == ["sent"]


def test_times_come_from_redis_when_none_is_given(
    ledger: JobLedger, redis_client: redis.Redis
) -> None:
    reserve(redis_client, "k1")
    seconds, micros = redis_client.time()
    before = seconds + micros / 1e6
    claim = ledger.claim("k1", "m1", kind="code")
    seconds, micros = redis_client.time()
    after = seconds + micros / 1e6
    assert before <= claim.now <= after
    stored = ledger.get("k1")
    assert float(stored["attempt_started_at"]) == claim.now
    assert float(stored["lease_until"]) == pytest.approx(claim.now + LEASE, abs=1e-5)
    seen = ledger.check("k1", claim.token)
    assert seen.held and claim.now <= seen.now


def test_the_reconcile_index_follows_the_record(
    ledger: JobLedger, redis_client: redis.Redis
) -> None:
    """Reserved, claimed and released jobs are indexed by when they are due; final ones leave."""
    IdempotencyStore(redis_client).reserve(
        "k1", payload_hash({"key": "k1"}), "code", job={"actor": "a", "payload": {"key": "k1"}}
    )
    assert redis_client.zscore(RECONCILE_KEY, "k1") is not None
    claim = ledger.claim("k1", "m1", T0, kind="code")
    assert redis_client.zscore(RECONCILE_KEY, "k1") == T0 + LEASE
    ledger.release("k1", claim.token, T0 + 1, uncertain=False, delay=40)
    assert redis_client.zscore(RECONCILE_KEY, "k1") == T0 + 41
    claim = ledger.claim("k1", "m1", T0 + 41, kind="code")
    ledger.finish("k1", claim.token, T0 + 42, outcome="sent", stream=SMS_RESULTS_STREAM,
                  record=record("k1"))
    assert redis_client.zscore(RECONCILE_KEY, "k1") is None
    assert "job" not in ledger.get("k1")


def test_a_namespace_prefixes_the_send_request_id_within_128_characters() -> None:
    assert send_request_id("order-42", "shop-a") == "shop-a:order-42"
    assert send_request_id("order-42", "shop-b") != send_request_id("order-42", "shop-a")
    odd = send_request_id("key with spaces", "n" * 32)
    assert odd == "n" * 32 + ":" + hashlib.sha256(b"key with spaces").hexdigest()
    assert len(send_request_id("x" * 128, "n" * 32)) == 97
    assert send_request_id("x" * 95, "n" * 32) == "n" * 32 + ":" + "x" * 95  # 128 exactly


def test_the_deployment_namespace_is_made_once_and_kept_in_redis(
    redis_client: redis.Redis,
) -> None:
    first = deployment_namespace(redis_client, "")
    assert first and first == deployment_namespace(redis_client, "")
    assert deployment_namespace(redis_client, "configured") == "configured"


def test_the_send_request_id_is_fixed_at_the_first_claim(
    make_ledger: Callable[..., JobLedger], redis_client: redis.Redis
) -> None:
    reserve(redis_client, "k1")
    ledger = make_ledger()
    ledger.configured_namespace = "old"
    claim = ledger.claim("k1", "m1", T0, kind="code")
    assert claim.request_id == "old:k1"
    ledger.release("k1", claim.token, T0 + 1, uncertain=True)
    # A new namespace (an upgrade, a changed setting) does not give the retry another id.
    renamed = make_ledger()
    renamed.configured_namespace = "new"
    assert renamed.claim("k1", "m1", T0 + 2, kind="code").request_id == "old:k1"


def test_a_record_from_before_namespaces_keeps_its_plain_id(
    ledger: JobLedger, redis_client: redis.Redis
) -> None:
    """An attempt made before ids were kept in the record sent the key itself: so do retries."""
    reserve(redis_client, "k1")
    redis_client.hset(record_key("k1"), mapping={"attempts": 1, "uncertain_since": T0})
    assert ledger.claim("k1", "m1", T0 + 5, kind="code").request_id == "k1"
