"""Signature vectors computed here by hand, independently of worker.sendcloud.signing.

SendCloud signs ``smsKey&k1=v1&...&smsKey`` over the raw values (sorted by key, smsKey and
signature left out). The expected strings below are written out literally so a change in
sorting, encoding or escaping shows up as a mismatch.
"""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qsl

import httpx
import pytest

from worker.sendcloud.client import SendCloudClient
from worker.sendcloud.signing import sign, signing_string
from worker.settings import Settings

KEY = "k3y-With=Odd&Chars"

PARAMS = {
    "smsUser": "demo_user",
    "templateId": "1001",
    "phone": "13800000001,13800000002",
    "timestamp": "1700000000000",
    "vars": '{"name":"张三","note":"a&b=c d"}',
    "msgType": "0",
}
# Sorted by key, values verbatim: no URL-encoding of &, =, spaces, commas or non-ASCII.
HAND_WRITTEN = (
    "k3y-With=Odd&Chars"
    "&msgType=0"
    "&phone=13800000001,13800000002"
    "&smsUser=demo_user"
    "&templateId=1001"
    "&timestamp=1700000000000"
    '&vars={"name":"张三","note":"a&b=c d"}'
    "&k3y-With=Odd&Chars"
)


def test_signing_string_matches_the_hand_written_one() -> None:
    assert signing_string(PARAMS, KEY) == HAND_WRITTEN


@pytest.mark.parametrize(
    ("method", "digest"),
    [
        ("md5", hashlib.md5(HAND_WRITTEN.encode("utf-8")).hexdigest()),
        ("sha256", hashlib.sha256(HAND_WRITTEN.encode("utf-8")).hexdigest()),
    ],
)
def test_sign_vectors(method: str, digest: str) -> None:
    assert sign(PARAMS, KEY, method) == digest
    assert len(digest) == {"md5": 32, "sha256": 64}[method]


def test_signature_and_sms_key_params_are_left_out() -> None:
    with_extras = {**PARAMS, "signature": "old", "smsKey": "should-not-count"}
    assert sign(with_extras, KEY, "md5") == hashlib.md5(HAND_WRITTEN.encode()).hexdigest()


def test_a_minimal_ascii_vector() -> None:
    params = {"smsUser": "u", "phone": "1", "code": "1234"}
    expected = hashlib.md5(b"k&code=1234&phone=1&smsUser=u&k").hexdigest()
    assert sign(params, "k") == expected


def test_an_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="sha1"):
        sign(PARAMS, KEY, "sha1")


@pytest.mark.parametrize("method", ["md5", "sha256"])
def test_the_wire_signature_matches_a_hand_written_string(method: str) -> None:
    """What the client sends, decoded as SendCloud decodes it, verifies against the raw values."""
    seen: dict[str, str] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(parse_qsl(request.content.decode("utf-8")))
        return httpx.Response(200, json={"statusCode": 200, "result": True, "message": "",
                                         "info": {"successCount": 1, "smsIds": ["x"]}})

    settings = Settings(
        base_url="https://sendcloud.test",
        sms_user="demo_user",
        sms_key=KEY,
        api_user="a",
        api_key="b",
        sign_method=method,
    )
    transport = httpx.MockTransport(handler)
    with SendCloudClient(settings, transport=transport, clock=lambda: 1_700_000_000.0) as client:
        client.send_sms(
            1001, ["13800000001", "13800000002"], {"name": "张三", "note": "a&b=c d"}
        )
    hand_written = (
        f"{KEY}&msgType=0&phone=13800000001,13800000002&smsUser=demo_user&templateId=1001"
        f'&timestamp=1700000000000&vars={{"name":"张三","note":"a&b=c d"}}&{KEY}'
    )
    digest = getattr(hashlib, method)(hand_written.encode("utf-8")).hexdigest()
    assert seen["signature"] == digest
