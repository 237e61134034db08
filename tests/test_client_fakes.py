"""A scripted SendCloud for client tests: replies queued in order, every request recorded.

Not a simulator: it checks nothing and answers what the test queued, so a test can produce
exactly the reply (or transport failure) it is about. Requests are recorded decoded, as
SendCloud would read them.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx

from worker.sendcloud.client import SendCloudClient
from worker.settings import Settings

REPLIES = Path(__file__).parent / "fixtures" / "replies"

SMS_KEY = "sms-KEY-s3cret-7f1e"
API_KEY = "api-KEY-s3cret-94ab"

Reply = dict[str, Any] | httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "base_url": "https://sendcloud.test",
        "sms_user": "test_sms_user",
        "sms_key": SMS_KEY,
        "api_user": "test_api_user",
        "api_key": API_KEY,
    }
    values.update(overrides)
    return Settings(**values)


def doc_reply(name: str) -> dict[str, Any]:
    reply: dict[str, Any] = json.loads((REPLIES / f"{name}.json").read_text(encoding="utf-8"))
    return reply


def ok(info: Any = None, code: int = 200) -> dict[str, Any]:
    return {"result": True, "statusCode": code, "message": "请求成功", "info": info or {}}


def fail(code: int, message: str = "failed", info: Any = None) -> dict[str, Any]:
    return {"result": False, "statusCode": code, "message": message, "info": info or {}}


@dataclass
class Recorded:
    method: str
    path: str
    params: dict[str, str]
    content_type: str
    timeout: dict[str, Any]


@dataclass
class FakeSendCloud:
    replies: deque[Reply] = field(default_factory=deque)
    requests: list[Recorded] = field(default_factory=list)

    def queue(self, *replies: Reply) -> FakeSendCloud:
        self.replies.extend(replies)
        return self

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            params = dict(request.url.params)
        else:
            params = dict(parse_qsl(request.content.decode("utf-8"), keep_blank_values=True))
        self.requests.append(
            Recorded(
                method=request.method,
                path=request.url.path,
                params=params,
                content_type=request.headers.get("content-type", ""),
                timeout=dict(request.extensions.get("timeout", {})),
            )
        )
        if not self.replies:
            raise AssertionError(f"unexpected request to {request.url.path}")
        reply = self.replies.popleft()
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, httpx.Response):
            return reply
        if callable(reply):
            return reply(request)
        return httpx.Response(200, json=reply)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    @property
    def last(self) -> Recorded:
        return self.requests[-1]


def make_client(
    fake: FakeSendCloud, clock: Callable[[], float] = lambda: 1_700_000_000.0, **overrides: Any
) -> SendCloudClient:
    return SendCloudClient(make_settings(**overrides), transport=fake.transport(), clock=clock)
