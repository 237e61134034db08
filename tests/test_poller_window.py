"""Window planning and record normalisation: pure logic, no Redis."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pytest

from worker.email_status.records import (
    SHANGHAI,
    STATUS_FIELDS,
    fingerprint,
    iso_time,
    normalise,
    request_date,
    status_code,
    sub_status_description,
)
from worker.email_status.window import MAX_SPAN_DAYS, Gap, plan_window

NOW = datetime(2024, 5, 20, 10, 0, tzinfo=SHANGHAI)
QUARTER = timedelta(minutes=15)


@dataclass(frozen=True)
class Record:
    email_id: str = "1700000000000_1_1_1.sc-10_9_8_7-inbound0$a@example.com"
    status: str = "无效邮件"
    sub_status: str | None = "406"
    sub_status_desc: str | None = "地址不存在"
    api_user: str = "sim_api_user"
    recipients: str = "a@example.com"
    request_time: str = "2024-05-19 09:34:18"
    modified_time: str = "2024-05-19 09:34:29"
    send_log: str | None = "unrouteable address"


def test_first_poll_covers_the_settle_lookback() -> None:
    window = plan_window(NOW, None, overlap=QUARTER, settle_days=3)
    assert (window.start, window.end, window.gap) == (date(2024, 5, 18), date(2024, 5, 20), None)
    assert window.days == 3


def test_recent_cursor_still_rereads_the_settle_lookback() -> None:
    cursor = NOW - timedelta(minutes=10)
    window = plan_window(NOW, cursor, overlap=QUARTER, settle_days=3)
    assert window.start == date(2024, 5, 18)


def test_overlap_crossing_midnight_reaches_the_previous_date() -> None:
    now = datetime(2024, 5, 20, 0, 5, tzinfo=SHANGHAI)
    cursor = datetime(2024, 5, 20, 0, 1, tzinfo=SHANGHAI)
    window = plan_window(now, cursor, overlap=QUARTER, settle_days=1)
    assert window.start == date(2024, 5, 19)
    assert plan_window(now, cursor, overlap=timedelta(0), settle_days=1).start == date(2024, 5, 20)


def test_dates_are_shanghai_dates_whatever_the_callers_zone() -> None:
    # 17:00 UTC on the 19th is already 01:00 on the 20th in Shanghai.
    utc_now = datetime.fromisoformat("2024-05-19T17:00:00+00:00")
    window = plan_window(utc_now, None, overlap=QUARTER, settle_days=1)
    assert (window.start, window.end) == (date(2024, 5, 20), date(2024, 5, 20))


def test_downtime_within_thirty_days_is_caught_up_without_a_gap() -> None:
    cursor = NOW - timedelta(days=20)
    window = plan_window(NOW, cursor, overlap=QUARTER, settle_days=3)
    assert window.start == date(2024, 4, 30)
    assert window.gap is None


def test_downtime_beyond_thirty_days_reports_the_unreachable_dates() -> None:
    cursor = datetime(2024, 4, 1, 8, 0, tzinfo=SHANGHAI)
    window = plan_window(NOW, cursor, overlap=QUARTER, settle_days=3)
    assert window.days == MAX_SPAN_DAYS
    assert window.start == date(2024, 4, 21)
    assert window.gap == Gap(date(2024, 4, 1), date(2024, 4, 20))
    assert window.gap.days == 20


def test_days_widens_but_never_narrows_the_window() -> None:
    assert plan_window(NOW, None, overlap=QUARTER, settle_days=3, days=7).start == date(
        2024, 5, 14
    )
    cursor = NOW - timedelta(days=10)
    assert plan_window(NOW, cursor, overlap=QUARTER, settle_days=3, days=1).start == date(
        2024, 5, 10
    )


@pytest.mark.parametrize("days", [0, 31])
def test_days_outside_the_thirty_day_rule_is_refused(days: int) -> None:
    with pytest.raises(ValueError, match="days: must be between 1 and 30"):
        plan_window(NOW, None, overlap=QUARTER, settle_days=3, days=days)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="now: must be timezone-aware"):
        plan_window(NOW.replace(tzinfo=None), None, overlap=QUARTER, settle_days=3)


def test_normalised_record_has_english_codes_and_iso_times() -> None:
    polled = datetime.fromisoformat("2024-05-20T02:00:00+00:00")
    entry = normalise(Record(), polled)
    assert tuple(entry) == STATUS_FIELDS
    assert entry == {
        "event": "status",
        "email_id": Record.email_id,
        "recipient": "a@example.com",
        "api_user": "sim_api_user",
        "status": "invalid",
        "status_raw": "无效邮件",
        "sub_status": "406",
        "sub_status_desc": "invalid email - address does not exist",
        "send_log": "unrouteable address",
        "request_time": "2024-05-19T09:34:18+08:00",
        "modified_time": "2024-05-19T09:34:29+08:00",
        "polled_at": "2024-05-20T10:00:00+08:00",
    }


@pytest.mark.parametrize(
    ("raw", "code"),
    [("送达", "delivered"), ("无效邮件", "invalid"), ("软退信", "soft_bounce"),
     ("请求中", "requested"), ("退订", "unknown"), ("", "unknown")],
)
def test_status_words_map_to_codes_and_unknown_never_fails(raw: str, code: str) -> None:
    assert status_code(raw) == code


def test_unknown_status_keeps_the_raw_word_and_empty_fields() -> None:
    record = Record(status="退订", sub_status=None, sub_status_desc=None, send_log=None,
                    modified_time="")
    entry = normalise(record, NOW)
    assert (entry["status"], entry["status_raw"]) == ("unknown", "退订")
    assert (entry["sub_status"], entry["sub_status_desc"], entry["send_log"]) == ("", "", "")
    assert entry["modified_time"] == ""


def test_sub_status_not_in_the_table_keeps_sendclouds_text() -> None:
    assert sub_status_description("503", "服务不可达") == "soft bounce - server unreachable"
    assert sub_status_description("599", "新的子类") == "新的子类"


def test_unreadable_times_pass_through_and_file_under_the_fallback_date() -> None:
    record = Record(request_time="yesterday")
    assert iso_time("yesterday") == "yesterday"
    assert request_date(record, date(2024, 5, 20)) == date(2024, 5, 20)
    assert request_date(Record(), date(2024, 5, 20)) == date(2024, 5, 19)


def test_fingerprint_changes_with_status_sub_status_or_modified_time() -> None:
    base = fingerprint(Record())
    assert fingerprint(Record()) == base
    assert fingerprint(Record(status="软退信")) != base
    assert fingerprint(Record(sub_status="407")) != base
    assert fingerprint(Record(modified_time="2024-05-19 09:40:00")) != base
    assert fingerprint(Record(send_log="other text")) == base
    assert base.startswith("2024-05-19 09:34:29|")
