"""Nothing under /v1/ is served without a key of the right scope: the live route table is
walked, every route and method; keys are stored hashed, shown once, and revoked at once."""

from __future__ import annotations

import re
from collections.abc import Callable

import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.testclient import TestClient

from producers import Producer
from tests.api_support import Api, api_fixture  # noqa: F401  (fixture `api`)
from tests.redis_server import free_port
from worker.web.api.app import ApiMount, api_app
from worker.web.api.keys import KEYS_SET, SCOPES, record_key
from worker.web.api.routing import MAX_JSON_BYTES

# Every route and the scope it needs (None: any valid key). A route added without an entry
# here fails test_every_route_is_listed, so its scope is a decision, not an accident.
EXPECTED_SCOPES = {
    ("POST", "/sms"): "send",
    ("POST", "/codes"): "send",
    ("POST", "/voice-codes"): "send",
    ("POST", "/members/add"): "send",
    ("POST", "/members/update"): "send",
    ("POST", "/members/delete"): "send",
    ("POST", "/verifications"): "send",
    ("POST", "/verifications/check"): "send",
    ("POST", "/verifications/cancel"): "send",
    ("GET", "/jobs/{key:path}"): "read",
    ("POST", "/campaigns"): "send",
    ("GET", "/campaigns/{campaign_id}"): "read",
    ("POST", "/campaigns/{campaign_id}/cancel"): "send",
    ("GET", "/campaigns/{campaign_id}/report"): "read",
    ("GET", "/keys"): "admin",
    ("POST", "/keys"): "admin",
    ("DELETE", "/keys/{key_id}"): "admin",
    ("GET", "/openapi.json"): None,
}


def live_routes(a: Api) -> list[tuple[str, str, str]]:
    """(method, route path, a concrete path) for every route and method being served."""
    found = []
    for route in a.routes:
        concrete = re.sub(r"\{[^}]+\}", "x1", route.path)
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                found.append((method, route.path, concrete))
    return found


def test_every_route_is_listed(api: Callable[..., Api]) -> None:
    a = api()
    served = {(method, path): route_scope for route in a.routes
              for method, path, route_scope in
              [(m, route.path, route.required_scope) for m in route.methods or () if m != "HEAD"]}
    assert served == EXPECTED_SCOPES


def test_every_route_refuses_no_key_a_bad_key_and_a_wrong_scope(api: Callable[..., Api]) -> None:
    a = api()
    keys = {scope: a.key(scope) for scope in SCOPES}
    routes = live_routes(a)
    assert len(routes) == len(EXPECTED_SCOPES)
    for method, path, concrete in routes:
        for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"},
                        {"Authorization": "Bearer scj_000000000000_" + "A" * 43},
                        {"Authorization": f"Bearer {keys['send']}x"}):
            answer = a.http.request(method, concrete, headers=headers)
            assert answer.status_code == 401, (method, path, headers, answer.text)
            assert answer.headers["www-authenticate"] == "Bearer"
            assert answer.json()["error"]["field"] == "Authorization"
        needed = EXPECTED_SCOPES[(method, path)]
        for scope, key in keys.items():
            answer = a.http.request(method, concrete, headers={"Authorization": f"Bearer {key}"})
            allowed = needed is None or scope in (needed, "admin")
            if allowed:
                assert answer.status_code not in (401, 403), (method, path, scope, answer.text)
            else:
                assert answer.status_code == 403, (method, path, scope, answer.text)
                assert answer.json()["error"]["rule"].startswith(f"this key's scope is {scope!r}")
            assert key not in answer.text


def test_keys_are_hashed_shown_once_and_revoked_at_once(api: Callable[..., Api]) -> None:
    a = api()
    admin = {"Authorization": f"Bearer {a.key('admin', 'ops')}"}
    made = a.http.post("/keys", headers=admin, json={"name": "shop-php", "scope": "send"})
    assert made.status_code == 201
    body = made.json()
    token = body["key"]
    assert re.fullmatch(r"scj_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", token)
    assert (body["name"], body["scope"], body["last_used"]) == ("shop-php", "send", None)
    stored = {k: v for k, v in a.redis.hgetall(record_key(body["id"])).items()}
    assert token.encode() not in b"".join(stored.values())
    assert set(stored) == {b"digest", b"name", b"scope", b"created_at"}
    # The listing shows names, scopes and use, never a key or its digest.
    send = {"Authorization": f"Bearer {token}"}
    assert a.http.post("/sms", headers=send, json={"template_id": 1,
                                                    "phones": ["13800138000"]}).status_code == 202
    listing = a.http.get("/keys", headers=admin)
    by_id = {key["id"]: key for key in listing.json()["keys"]}
    assert by_id[body["id"]]["last_used"] >= by_id[body["id"]]["created_at"]
    assert token not in listing.text and stored[b"digest"].decode() not in listing.text
    assert a.http.delete(f"/keys/{body['id']}", headers=admin).status_code == 204
    assert a.http.post("/sms", headers=send, json={}).status_code == 401
    again = a.http.delete(f"/keys/{body['id']}", headers=admin)
    assert again.status_code == 404 and again.json()["error"]["field"] == "key_id"
    assert body["id"].encode() not in a.redis.smembers(KEYS_SET)
    for bad, field in (({"name": "", "scope": "send"}, "name"),
                       ({"name": "x", "scope": "root"}, "scope"),
                       ({"name": "x"}, "scope")):
        refused = a.http.post("/keys", headers=admin, json=bad)
        assert refused.status_code == 422 and refused.json()["error"]["field"] == field


def test_unknown_paths_and_methods_answer_in_the_error_shape(api: Callable[..., Api]) -> None:
    a = api()
    auth = a.auth("admin")
    missing = a.http.get("/nowhere", headers=auth)
    assert missing.status_code == 404 and missing.json()["error"]["rule"] == "no such API path"
    wrong = a.http.put("/sms", headers=auth)
    assert wrong.status_code == 405 and "error" in wrong.json()


def test_redis_out_of_reach_is_a_503_in_the_error_shape() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    producer = Producer(redis_url=url)
    app = Starlette(routes=[ApiMount("/v1", api_app(producer, aioredis.Redis.from_url(url)))])
    token = "scj_0123456789ab_" + "A" * 43
    with TestClient(app) as http:
        answer = http.get("/v1/jobs/x", headers={"Authorization": f"Bearer {token}"})
    producer.close()
    assert answer.status_code == 503
    assert answer.json()["error"]["rule"] == "Redis is unreachable; try again"
    assert token not in answer.text


def test_a_body_over_the_limit_is_a_413(api: Callable[..., Api]) -> None:
    a = api()
    big = b'{"phones": [' + b'"13800138000",' * (MAX_JSON_BYTES // 14) + b'"x"]}'
    answer = a.http.post("/sms", headers={**a.auth("send"), "content-type": "application/json"},
                         content=big)
    assert answer.status_code == 413 and answer.json()["error"]["field"] == "body"


def test_a_path_holding_a_newline_still_gets_the_api_s_json_answer(
    api: Callable[..., Api],
) -> None:
    a = api()
    answer = a.http.get("/campaigns/a%0Ab/report", headers=a.auth("read"))
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "campaign_id"


def test_a_reservation_not_replicated_is_a_503_to_retry() -> None:
    from producers import NotReplicated
    from worker.web.api.routing import as_api_error

    error = as_api_error(NotReplicated("the reservation of 'k'", 0, 1))
    assert error is not None and error.status == 503
    assert error.headers == {"Retry-After": "1"} and error.rule == "not replicated in time; retry"
