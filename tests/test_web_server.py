"""``sendcloud-jobs web`` as deployed: a real uvicorn process on a free port, hooks posted over
HTTP with httpx, against this session's Redis, and against a Redis stopped and started again."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.redis_server import free_port, start_redis_server
from tests.webhooks import MAIL_KEY, SMS_KEY, json_body, redis_ms, signed, sms_deliver
from worker.web.inbox import MAIL_INBOX, SMS_INBOX, decode_entry

CLI = str(Path(sys.executable).parent / "sendcloud-jobs")


def web_env(redis_url: str, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDCLOUD_")}
    env.update(REDIS_URL=redis_url, SENDCLOUD_SMS_HOOK_KEY=SMS_KEY,
               SENDCLOUD_MAIL_HOOK_KEY=MAIL_KEY, LOG_FORMAT="json")  # fmt: skip
    env.update(settings)
    return env


@dataclass
class Web:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[Callable[..., Web]]:
    """``web_server(redis_url, **settings)``: ``sendcloud-jobs web`` on a free port, up and
    answering /healthz; stopped (SIGTERM, then SIGKILL) when the test ends."""
    started: list[Web] = []

    def start(redis_url: str, **settings: str) -> Web:
        port = free_port()
        log = tmp_path / f"web-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen([CLI, "web", "--port", str(port)],
                                       env=web_env(redis_url, **settings), stdout=out,
                                       stderr=subprocess.STDOUT)  # fmt: skip
        web = Web(f"http://127.0.0.1:{port}", process, log)
        started.append(web)
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{web.url}/healthz", timeout=5)
                return web
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"sendcloud-jobs web did not start:\n{log.read_text()}")
                time.sleep(0.1)

    yield start
    for web in started:
        web.process.terminate()
        try:
            web.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            web.process.kill()
            web.process.wait()


def test_hooks_over_http_are_stored_once_and_logged_as_json(
    web_server: Callable[..., Web], redis_url: str, redis_client: redis.Redis
) -> None:
    web = web_server(redis_url)
    now = redis_ms(redis_client)
    deliver = sms_deliver(now)
    mail = signed(MAIL_KEY, now, event="open", emailId="1$a@example.com", ip="10.0.0.1")
    with httpx.Client(base_url=web.url) as http:
        assert http.get("/hooks/sms").status_code == 200  # SendCloud's probe
        assert http.post("/hooks/sms", data=deliver).status_code == 200
        assert http.post("/hooks/sms", data=deliver).status_code == 200  # a retry
        assert http.post("/hooks/mail", content=json_body(mail),
                         headers={"content-type": "application/json"}).status_code == 200
        assert http.post("/hooks/mail", data={**mail, "signature": "0" * 64}).status_code == 403
        assert http.get("/healthz").json() == {"redis": "ok"}
    [(_, sms_fields)] = redis_client.xrange(SMS_INBOX)
    [(_, mail_fields)] = redis_client.xrange(MAIL_INBOX)
    assert decode_entry(sms_fields)[0]["smsId"] == deliver["smsId"]
    assert decode_entry(mail_fields)[0]["event"] == "open"

    # SIGTERM: uvicorn finishes, runs the app's shutdown, then dies of the signal it caught.
    web.process.send_signal(signal.SIGTERM)
    assert web.process.wait(timeout=15) == -signal.SIGTERM
    lines = web.lines()  # every line, uvicorn's own included, went through structlog
    assert "Application shutdown complete." in [line["event"] for line in lines]
    outcomes = [(line["path"], line["outcome"]) for line in lines if line["event"] == "hook"]
    assert outcomes == [("/hooks/sms", "stored"), ("/hooks/sms", "duplicate"),
                        ("/hooks/mail", "stored"), ("/hooks/mail", "refused")]
    assert any(line.get("logger", "").startswith("uvicorn") for line in lines)  # type: ignore[union-attr]
    text = web.log.read_text()
    for secret in (SMS_KEY, MAIL_KEY, deliver["token"], deliver["signature"], mail["token"]):
        assert secret not in text


def test_redis_down_answers_503_and_the_retry_is_stored_once(
    web_server: Callable[..., Web], tmp_path: Path
) -> None:
    server = start_redis_server(appendonly=True)
    assert server is not None
    servers = [server]
    try:
        client = redis.Redis.from_url(server.url)
        web = web_server(server.url)
        with httpx.Client(base_url=web.url, timeout=10) as http:
            first = sms_deliver(redis_ms(client), sms_id="1_1$13800000001")
            assert http.post("/hooks/sms", data=first).status_code == 200
            retried = sms_deliver(redis_ms(client), sms_id="1_2$13800000002")
            client.close()
            server.process.terminate()  # a clean stop: the AOF keeps the first hook
            server.process.wait(timeout=10)

            assert http.post("/hooks/sms", data=retried).status_code == 503
            assert http.get("/healthz").status_code == 503

            server = start_redis_server(appendonly=True, port=server.port, workdir=server.workdir)
            assert server is not None
            servers.append(server)
            assert http.post("/hooks/sms", data=retried).status_code == 200  # SendCloud's retry
            assert http.post("/hooks/sms", data=retried).status_code == 200  # and another
            assert http.get("/healthz").status_code == 200
        client = redis.Redis.from_url(server.url)
        stored = [decode_entry(fields)[0]["smsId"] for _, fields in client.xrange(SMS_INBOX)]
        client.close()
        assert stored == ["1_1$13800000001", "1_2$13800000002"]
        refused = [line for line in web.lines() if line.get("status") == 503]
        assert len(refused) == 1 and "Redis unreachable" in str(refused[0]["reason"])
    finally:
        for each in servers:
            each.stop()


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "web", *args], env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def test_a_taken_port_is_one_line_and_exit_2(redis_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(web_env(redis_url), "--port", str(port))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stdout == ""
    assert result.stderr.startswith("sendcloud-jobs: error: --port:") and str(port) in result.stderr


@pytest.mark.parametrize(("settings", "variable"), [
    ({"SENDCLOUD_SMS_HOOK_KEY": "", "SENDCLOUD_MAIL_HOOK_KEY": ""}, "SENDCLOUD_SMS_HOOK_KEY"),
    ({"SENDCLOUD_HOOK_WINDOW": "an hour"}, "SENDCLOUD_HOOK_WINDOW"),
    ({"SENDCLOUD_SMS_HOOK_KEY": "sim-sms-key-0000", "SENDCLOUD_SMS_KEY": "sim-sms-key-0000"},
     "SENDCLOUD_SMS_HOOK_KEY"),
    ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
], ids=["no-key", "bad-window", "key-is-smskey", "bad-redis-url"])
def test_a_missing_or_bad_setting_is_one_line_and_exit_2(
    redis_url: str, settings: dict[str, str], variable: str
) -> None:
    result = run_cli(web_env(redis_url, **settings), "--port", str(free_port()))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"sendcloud-jobs: error: {variable}:")
    assert "sim-sms-key-0000" not in result.stderr
