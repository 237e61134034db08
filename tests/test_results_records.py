"""Per-recipient outcomes built from SendCloud's replies."""

from __future__ import annotations

from worker.jobs.results import recipients_of_result
from worker.sendcloud.models import FailedRecipient, SmsResult


def reply(sms_ids: list[str], failed: list[FailedRecipient] | None = None) -> SmsResult:
    failed = failed or []
    return SmsResult(status_code=311 if failed else 200, message="ok", sms_ids=sms_ids,
                     success_count=len(sms_ids), failed_count=len(failed), failed=failed)


def test_sms_ids_are_matched_by_their_phone_tail_in_any_order() -> None:
    phones = ["13800000001", "13800000002", "+447700900123"]
    ids = ["1_2_3$447700900123", "1_2_4$13800000002", "1_2_5$13800000001"]
    out = recipients_of_result(phones, reply(ids))
    assert [(r["phone"], r["sms_id"]) for r in out] == [
        ("13800000001", "1_2_5$13800000001"),
        ("13800000002", "1_2_4$13800000002"),
        ("+447700900123", "1_2_3$447700900123"),
    ]


def test_a_tail_with_a_country_prefix_still_matches() -> None:
    out = recipients_of_result(["13800000001"], reply(["9_9$8613800000001"]))
    assert out[0]["sms_id"] == "9_9$8613800000001"


def test_refused_phones_carry_the_reason_and_unmatched_ids_fill_in_order() -> None:
    phones = ["13800000001", "13800000002", "13800000003"]
    refused = [FailedRecipient(phone="13800000002", message="手机号格式错误", vars={})]
    out = recipients_of_result(phones, reply(["no-tail-a", "1$13800000003"], refused))
    assert [(r["phone"], r["outcome"], r["sms_id"]) for r in out] == [
        ("13800000001", "sent", "no-tail-a"),
        ("13800000002", "failed", None),
        ("13800000003", "sent", "1$13800000003"),
    ]
    assert out[1]["message"] == "手机号格式错误"


def test_a_full_chunk_is_matched_exactly() -> None:
    phones = [f"138{i:08d}" for i in range(2000)]
    ids = [f"id{i}${p}" for i, p in reversed(list(enumerate(phones)))]
    out = recipients_of_result(phones, reply(ids))
    assert all(r["sms_id"] == f"id{i}${r['phone']}" for i, r in enumerate(out))
