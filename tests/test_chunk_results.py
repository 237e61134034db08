"""A campaign chunk's compact result: every recipient comes back as the full record had it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from producers.chunk_results import Recipient, compact, pack_sms_ids, recipients, unpack_sms_ids
from worker.jobs.results import Ending, recipient, sms_record

PHONES = [f"138{i:08d}" for i in range(2000)]


def full(outcome: str, status: int | None, message: str, items: list[dict[str, object]]
         ) -> dict[str, object]:
    end = Ending("sms", outcome, status, message, 1, 1_700_000_000.0)
    return sms_record({"key": "campaign:c:0", "campaign_id": "c", "chunk_index": 0}, end,
                      recipients=items)  # fmt: skip


def as_recipients(items: list[dict[str, object]]) -> list[Recipient]:
    return [Recipient(str(i["phone"]), str(i["outcome"]), i["sms_id"],  # type: ignore[arg-type]
                      i["status_code"], str(i["message"])) for i in items]  # type: ignore[arg-type]


def test_a_partial_chunk_round_trips_in_a_few_bytes_a_number() -> None:
    items = [
        recipient(p, "failed", status_code=311, message="手机号格式错误") if i % 500 == 7
        else recipient(p, "sent", sms_id=f"1700000000000_{i}_3_0_abcdef${p}", status_code=311)
        for i, p in enumerate(PHONES)
    ]  # fmt: skip
    stored, summary = compact(full("partial", 311, "部分成功", items), PHONES)

    assert list(recipients(PHONES, stored)) == as_recipients(items)
    assert (summary["accepted"], summary["failed"], len(summary["failures"])) == (1996, 4, 4)
    assert "sms_ids_packed" not in summary and "recipients" not in summary
    assert len(stored["sms_ids_packed"]) / len(PHONES) < 8  # bytes a number, base64 included


def test_uniform_chunks_list_no_failures() -> None:
    for outcome, status, message, each in (
        ("failed", 431, "template does not exist", "failed"),
        ("needs_review", None, "no reply", "needs_review"),
        ("duplicate", 400, "duplicate request", "duplicate"),
        ("cancelled", None, "the campaign was cancelled", "cancelled"),
    ):
        items = [recipient(p, each, status_code=status, message=message) for p in PHONES[:10]]
        stored, summary = compact(full(outcome, status, message, items), PHONES[:10])
        assert summary["failures"] == [] and "sms_ids_packed" not in stored
        assert list(recipients(PHONES[:10], stored)) == as_recipients(items)


@given(st.lists(st.one_of(st.none(), st.text(alphabet="0123456789_abc$+", max_size=30)),
                min_size=1, max_size=50))
def test_any_sms_ids_pack_and_unpack(ids: list[str | None]) -> None:
    phones = [f"139{i:08d}" for i in range(len(ids))]
    ids = [None if i is None else (i + "$" + phones[n] if n % 2 else i) for n, i in enumerate(ids)]
    assert unpack_sms_ids(phones, pack_sms_ids(phones, ids)) == [i or None for i in ids]


def test_the_workers_fast_path_stores_what_compact_would() -> None:
    from worker.jobs.results import chunk_success_record, recipients_of_result
    from worker.sendcloud.models import SmsResult

    phones = PHONES[:50]
    refused = {phones[3]: "手机号格式错误", phones[40]: "黑名单"}
    ids = [f"1700000000000_{i}_3_0_abcdef${p}" for i, p in enumerate(phones) if p not in refused]
    result = SmsResult.parse(311, "部分成功", {
        "successCount": len(ids), "failedCount": 2, "smsIds": ids,
        "items": [{"phone": p, "message": m} for p, m in refused.items()]})
    payload = {"key": "campaign:c:0", "campaign_id": "c", "chunk_index": 0}
    end = Ending("sms", "partial", 311, "部分成功", 1, 1_700_000_000.0)

    fast = chunk_success_record(payload, end, phones, result)
    full_record = sms_record(payload, end, recipients=recipients_of_result(phones, result),
                             sms_ids=result.sms_ids)
    assert fast == compact(full_record, phones)[0]
    # smsIds that do not end with their phone take the general path.
    odd = SmsResult.parse(200, "ok", {"successCount": 1, "smsIds": ["x1"]})
    assert chunk_success_record(payload, end, phones[:1], odd) is None
