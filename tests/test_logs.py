"""Logging: JSON and key=value output, the job on every line, and redaction of secrets.

The client's own log lines are checked twice: as raw event dicts (capture_logs, which bypasses
every processor, so redaction cannot hide a leak) and as the configured renderer's real output.
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import structlog
from structlog.testing import capture_logs

from tests.test_client_fakes import (
    API_KEY,
    SMS_KEY,
    FakeSendCloud,
    fail,
    make_client,
    make_settings,
    ok,
)
from worker import logs as logs_module
from worker.logs import MASK, Redactor, bind_job, configure_logging, utc_timestamp
from worker.sendcloud import errors
from worker.sendcloud.client import SendCloudClient

PHONE = "13912345678"
MEMBER = "private.person@example.com"


@pytest.fixture
def configured(restore_logging: None) -> Callable[..., io.StringIO]:
    def configure(log_format: str = "json", level: str = "DEBUG") -> io.StringIO:
        stream = io.StringIO()
        configure_logging(make_settings(log_format=log_format, log_level=level), stream=stream)
        return stream

    return configure


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


# -- the redaction processor ---------------------------------------------------------------


def test_secret_keys_are_masked_at_any_depth_and_any_case() -> None:
    redact = Redactor()
    event = {
        "event": "e",
        "apiKey": "a",
        "SMSKEY": "b",
        "params": {"signature": "c", "nested": [{"api_key": "d"}, {"sms_key": "e"}]},
        "count": 3,
    }
    assert redact(None, "info", event) == {
        "event": "e",
        "apiKey": MASK,
        "SMSKEY": MASK,
        "params": {"signature": MASK, "nested": [{"api_key": MASK}, {"sms_key": MASK}]},
        "count": 3,
    }


def test_secret_values_are_scrubbed_inside_any_string() -> None:
    redact = Redactor(["short", "short-and-longer"])

    class Holder:
        def __str__(self) -> str:
            return "holds short-and-longer"

    event = {
        "event": "url https://x/?k=short-and-longer&j=short",
        "items": ("a short one", 4, None, True),
        "obj": Holder(),
    }
    assert redact(None, "info", event) == {
        "event": f"url https://x/?k={MASK}&j={MASK}",
        "items": [f"a {MASK} one", 4, None, True],
        "obj": f"holds {MASK}",
    }


# -- configured output ---------------------------------------------------------------------


def test_json_lines_carry_level_time_and_the_bound_job(
    configured: Callable[..., io.StringIO],
) -> None:
    stream = configured("json")
    log = structlog.get_logger("test")
    with bind_job(key="sms:abc", message_id="m-1", actor="sendcloud_send_sms"):
        log.info("first", n=1)
        logging.getLogger("dramatiq.test").warning("from the stdlib %s", "logger")
    log.info("after")
    first, stdlib, after = json_lines(stream)
    assert first["event"] == "first" and first["level"] == "info" and first["n"] == 1
    assert "timestamp" in first
    for line in (first, stdlib):
        assert (line["job_key"], line["message_id"], line["actor"]) == (
            "sms:abc",
            "m-1",
            "sendcloud_send_sms",
        )
    assert stdlib["event"] == "from the stdlib logger" and stdlib["level"] == "warning"
    assert "job_key" not in after


def test_console_format_is_key_value(configured: Callable[..., io.StringIO]) -> None:
    stream = configured("console")
    with bind_job(key="code:1"):
        structlog.get_logger("test").info("hello", apiKey=API_KEY, note=f"x{SMS_KEY}y")
    line = stream.getvalue().strip()
    assert line.startswith("timestamp=")
    assert "level='info'" in line and "event='hello'" in line and "job_key='code:1'" in line
    assert f"apiKey='{MASK}'" in line and f"note='x{MASK}y'" in line
    assert API_KEY not in line and SMS_KEY not in line


def test_level_filtering_follows_settings(configured: Callable[..., io.StringIO]) -> None:
    stream = configured("json", "WARNING")
    log = structlog.get_logger("test")
    log.info("hidden")
    log.warning("shown")
    assert [line["event"] for line in json_lines(stream)] == ["shown"]


def test_tracebacks_are_scrubbed(configured: Callable[..., io.StringIO]) -> None:
    stream = configured("json")
    try:
        raise RuntimeError(f"boom with {API_KEY}")
    except RuntimeError:
        structlog.get_logger("test").exception("failed")
        logging.getLogger("other").exception("stdlib failed")
    text = stream.getvalue()
    assert API_KEY not in text
    assert text.count(f"boom with {MASK}") == 2


def test_reconfiguring_replaces_the_handler(configured: Callable[..., io.StringIO]) -> None:
    old = configured("json")
    new = configured("json")
    structlog.get_logger("test").info("once")
    assert old.getvalue() == "" and len(json_lines(new)) == 1


def test_a_plain_handler_on_the_same_stream_is_replaced(restore_logging: None) -> None:
    # The `dramatiq` command calls basicConfig on the stream our handler then uses.
    stream = io.StringIO()
    plain = logging.StreamHandler(stream)
    logging.getLogger().addHandler(plain)
    configure_logging(make_settings(log_format="json", log_level="INFO"), stream=stream)
    logging.getLogger("dramatiq.worker").info("booted")
    assert plain not in logging.getLogger().handlers
    assert [line["event"] for line in json_lines(stream)] == ["booted"]


def test_bound_job_is_per_thread(configured: Callable[..., io.StringIO]) -> None:
    stream = configured("json")
    log = structlog.get_logger("test")
    ready, done = threading.Event(), threading.Event()

    def other() -> None:
        ready.wait()
        log.info("other thread")
        done.set()

    thread = threading.Thread(target=other)
    thread.start()
    with bind_job(key="mine"):
        ready.set()
        done.wait()
        log.info("this thread")
    thread.join()
    lines = {line["event"]: line for line in json_lines(stream)}
    assert "job_key" not in lines["other thread"]
    assert lines["this thread"]["job_key"] == "mine"


# -- the client's log lines ----------------------------------------------------------------


def exercise_client(client: SendCloudClient) -> None:
    """A success, a failure, a 461 re-sync, an unreadable reply and a network error."""
    client.send_sms(3, [PHONE], {"name": "韩梅梅"}, send_request_id="job-77")
    for call in (
        lambda: client.add_members("l@m.org", [MEMBER]),
        lambda: client.send_code(PHONE, "482913"),
        lambda: client.send_voice(PHONE, "482913"),
    ):
        with pytest.raises(errors.SendCloudError):
            call()
    client.send_code(PHONE, "482913", send_request_id="job-78")


def client_replies(fake: FakeSendCloud) -> None:
    def reset(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError(f"reset while sending {SMS_KEY} {PHONE}")

    fake.queue(
        ok({"successCount": 1, "smsIds": ["s1"]}),
        fail(40005, f"认证失败 {API_KEY}"),
        fail(461),
        ok({"timestamp": 1_700_000_030_000}),
        fail(461),
        fail(461),
        reset,
        fail(461),
        ok({"timestamp": 1_700_000_030_000}),
        ok({"successCount": 1, "smsIds": ["s2"]}),
    )


def forbidden(fake: FakeSendCloud) -> list[str]:
    signatures = [r.params["signature"] for r in fake.requests if "signature" in r.params]
    return [SMS_KEY, API_KEY, PHONE, MEMBER, "韩梅梅", "482913", "job-77", *signatures]


def test_client_events_hold_endpoint_code_and_duration_only() -> None:
    fake = FakeSendCloud()
    client_replies(fake)
    with capture_logs() as events, make_client(fake) as client:
        exercise_client(client)
    calls = [e for e in events if e["event"] in ("sendcloud.call", "sendcloud.call_failed")]
    assert [(e["endpoint"], e["status_code"]) for e in calls] == [
        ("/smsapi/send", 200),
        ("/apiv2/addressmember/add", 40005),
        ("/smsapi/sendCode", 461),
        ("/smsapi/timestamp/get", 200),
        ("/smsapi/sendCode", 461),
        ("/smsapi/sendVoice", 461),
        ("/smsapi/timestamp/get", None),
        ("/smsapi/sendCode", 461),
        ("/smsapi/timestamp/get", 200),
        ("/smsapi/sendCode", 200),
    ]
    assert all(isinstance(e["duration_ms"], float) for e in calls)
    assert any(e["event"] == "sendcloud.clock_resynced" for e in events)
    text = repr(events)
    for secret in forbidden(fake):
        assert secret not in text


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_client_output_holds_no_secret(
    configured: Callable[..., io.StringIO], log_format: str
) -> None:
    stream = configured(log_format)
    fake = FakeSendCloud()
    client_replies(fake)
    with make_client(fake) as client:
        exercise_client(client)
    text = stream.getvalue()
    assert text.count("sendcloud.call") >= 10
    assert "/apiv2/addressmember/add" in text and "duration_ms" in text
    for secret in forbidden(fake):
        assert secret not in text


def test_dramatiq_message_lines_keep_actor_and_id_but_not_the_payload(
    configured: Callable[..., io.StringIO],
) -> None:
    from dramatiq import Message

    stream = configured("json", "DEBUG")
    message = Message(queue_name="sendcloud.codes", actor_name="sendcloud_send_code",
                      args=({"key": "k1", "phone": "13800000007", "code": "987654"},),
                      kwargs={}, options={})
    logging.getLogger("dramatiq.worker.WorkerThread").info(
        "Failed to process message %s with expected exception %s.", message, "PermanentJobFailure")
    [line] = json_lines(stream)
    assert line["event"] == (f"Failed to process message sendcloud_send_code({message.message_id}) "
                             "with expected exception PermanentJobFailure.")
    assert "987654" not in stream.getvalue() and "13800000007" not in stream.getvalue()


# -- structlog's lines, written straight to the stream --------------------------------------


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_structlog_and_stdlib_lines_share_the_stream_fields_and_redaction(
    restore_logging: None, log_format: str
) -> None:
    settings = make_settings(log_format=log_format, log_level="INFO")
    stream = io.StringIO()
    configure_logging(settings, stream=stream)
    log = structlog.get_logger("worker.web.hooks")
    log.debug("hidden", n=1)
    log.info("hook", path="/hooks/sms", note=f"key {SMS_KEY} inside", signature="abc",
             nested={"apiKey": "x", "ok": [API_KEY]})  # fmt: skip
    logging.getLogger("dramatiq.worker").info("stdlib line %s", SMS_KEY)
    logging.getLogger("dramatiq.worker").debug("stdlib hidden")
    text = stream.getvalue()
    assert SMS_KEY not in text and API_KEY not in text and "abc" not in text
    assert "hidden" not in text
    lines = text.splitlines()
    assert len(lines) == 2
    if log_format == "json":
        direct, standard = (json.loads(line) for line in lines)
        assert direct["note"] == f"key {MASK} inside" and direct["signature"] == MASK
        assert direct["nested"] == {"apiKey": MASK, "ok": [MASK]}
        assert standard["event"] == f"stdlib line {MASK}"
        # The same fields as a line through the standard library's handler.
        assert set(standard) <= set(direct)
        assert (direct["logger"], direct["level"], direct["event"]) == (
            "worker.web.hooks", "info", "hook")
        assert standard["logger"] == "dramatiq.worker"
    else:
        assert lines[0].startswith("timestamp=") and "event='hook'" in lines[0]


def test_lines_from_many_threads_never_interleave(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(make_settings(log_format="json", log_level="INFO"), stream=stream)

    def write(i: int) -> None:
        for n in range(200):
            if n % 2:
                structlog.get_logger("t").info("structlog", thread=i, n=n, pad="x" * 200)
            else:
                logging.getLogger("t").info("stdlib %s %s %s", i, n, "y" * 200)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 800
    assert all(json.loads(line)["logger"] == "t" for line in lines)


def test_a_line_that_cannot_be_written_does_not_fail_the_caller(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = io.StringIO()
    configure_logging(make_settings(log_format="json", log_level="INFO"), stream=stream)
    stream.close()
    structlog.get_logger("t").info("lost", n=1)  # raises nothing
    assert "Logging error" in capsys.readouterr().err


def test_a_line_that_cannot_be_rendered_does_not_fail_the_caller(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = io.StringIO()
    configure_logging(make_settings(log_format="json", log_level="INFO"), stream=stream)
    with bind_job(key="job-7"):
        structlog.get_logger("t").info("odd", counts={(1, 2): 3})  # JSON refuses tuple keys
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert (record["event"], record["job_key"], record["level"]) == ("odd", "job-7", "info")
    assert "Logging error" in capsys.readouterr().err


@pytest.mark.parametrize("now", [1_796_675_404.540123, 1_796_675_405.0, 1_796_675_405.999999,
                                 1_796_675_406.000001, 1_796_675_404.25])
def test_the_timestamp_is_utc_iso_8601_with_microseconds(
    monkeypatch: pytest.MonkeyPatch, now: float
) -> None:
    # worker.logs's own clock only: patching time.time would reach every thread of the session.
    clock = SimpleNamespace(time=lambda: now, strftime=time.strftime, gmtime=time.gmtime)
    monkeypatch.setattr(logs_module, "time", clock)
    stamped = utc_timestamp(None, "info", {})["timestamp"]
    expected = datetime.fromtimestamp(now, UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamped)
    # A float's last microsecond may round either way; the rest is exact, seconds included.
    assert abs(datetime.fromisoformat(stamped) - expected) <= timedelta(microseconds=1)
    assert stamped[:19] == expected.strftime("%Y-%m-%dT%H:%M:%S")
