"""Campaigns over the API: a CSV upload read as the CLI reads it, resume and conflict by id,
status, cancel and the streamed report, on a real RedisBroker and redis-server."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

import httpx

from producers.campaign_report import REPORT_HEADER
from producers.contract import SMS_QUEUE
from tests.api_support import Api, api_fixture  # noqa: F401  (fixture `api`)

NUMBERS = [f"1380013{i:04d}" for i in range(2500)]


def table(numbers: list[str]) -> bytes:
    rows = ["name,mobile", *(f"user {i},{n}" for i, n in enumerate(numbers)), "bad,12345"]
    return ("\n".join(rows) + "\n").encode()


def start(a: Api, auth: dict[str, str], content: bytes, **fields: str) -> httpx.Response:
    data = {"campaign_id": "spring", "template_id": "9", **fields}
    return a.http.post("/campaigns", headers=auth, data=data,
                       files={"file": ("numbers.csv", content, "text/csv")})


def test_a_csv_campaign_starts_resumes_reports_and_cancels(api: Callable[..., Api]) -> None:
    a = api()
    send, read = a.auth("send"), a.auth("read")
    started = start(a, send, table(NUMBERS), column="mobile", vars='{"season": "spring"}')
    assert started.status_code == 201, started.text
    body = started.json()
    assert (body["input"], body["valid"], body["invalid"], body["chunks"], body["resumed"]) == (
        2501, 2500, 1, 2, False)
    chunks = [m["args"][0] for m in a.queued(SMS_QUEUE)]
    assert [len(c["phones"]) for c in chunks] == [2000, 500]
    assert chunks[0]["vars"] == {"season": "spring"}

    again = start(a, send, table(NUMBERS), column="mobile", vars='{"season": "spring"}')
    assert again.status_code == 200 and again.json()["resumed"] is True
    assert len(a.queued(SMS_QUEUE)) == 2  # nothing enqueued twice
    other = start(a, send, table(NUMBERS[:10]), column="mobile", vars='{"season": "spring"}')
    assert other.status_code == 409 and other.json()["error"]["field"] == "campaign_id"

    status = a.http.get("/campaigns/spring", headers=read).json()
    assert (status["valid"], status["pending"], status["finished"]) == (2500, 2500, False)

    report = a.http.get("/campaigns/spring/report", headers=read)
    assert report.status_code == 200
    assert report.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(report.text)))
    assert tuple(rows[0]) == REPORT_HEADER
    assert [row[0] for row in rows[1:2501]] == NUMBERS
    assert {row[1] for row in rows[1:2501]} == {"pending"}
    assert rows[2501][:2] == ["12345", "invalid"]

    cancelled = a.http.post("/campaigns/spring/cancel", headers=send)
    assert cancelled.status_code == 200 and cancelled.json()["cancel_requested"] is True
    for path in ("/campaigns/nope", "/campaigns/nope/report"):
        missing = a.http.get(path, headers=read)
        assert missing.status_code == 404 and missing.json()["error"]["field"] == "campaign_id"


def test_a_file_the_reader_refuses_is_a_422_and_takes_no_id(api: Callable[..., Api]) -> None:
    a = api()
    send = a.auth("send")
    cases = [
        (table(NUMBERS[:3]), {}, "file"),  # several columns, none named
        (table(NUMBERS[:3]), {"column": "phone"}, "column"),
        (b"12345\nhello\n", {}, "phones"),
        (b"13800138000\n", {"template_id": "nine"}, "template_id"),
        (b"13800138000\n", {"vars": "[1]"}, "vars"),
        (b"13800138000\n", {"campaign_id": "bad id!"}, "campaign_id"),
        (b"13800138000\n", {"skip_header": "yes"}, "skip_header"),
        (b"13800138000\n", {"colour": "red"}, "colour"),
    ]
    for content, fields, field in cases:
        refused = start(a, send, content, **fields)
        assert refused.status_code == 422, (fields, refused.text)
        assert refused.json()["error"]["field"] == field, (fields, refused.json())
    no_file = a.http.post("/campaigns", headers=send,
                          data={"campaign_id": "spring", "template_id": "9"},
                          files={"other": ("x", b"1", "text/plain")})
    assert no_file.status_code == 422
    as_json = a.http.post("/campaigns", headers=send, json={"campaign_id": "spring"})
    assert as_json.status_code == 415
    assert a.queued(SMS_QUEUE) == []
    assert a.http.get("/campaigns/spring", headers=a.auth("read")).status_code == 404
