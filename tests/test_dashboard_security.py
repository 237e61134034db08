"""The dashboard's guards: login, the session cookie, CSRF, roles, login rate limits, and that
no route answers without a session."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
import redis
from starlette.routing import Route
from starlette.testclient import TestClient

from producers import campaign_status, start_campaign
from tests.dashboard_support import (
    PASSWORDS,
    add_users,
    csrf_of,
    dashboard_clients,
    dashboard_settings,
    log_in,
)
from tests.jobs_harness import TEMPLATE_ID, Stack, mainland, stack_factory
from worker.settings import ConfigurationError
from worker.web.dashboard.app import dashboard_app
from worker.web.dashboard.security import LOGIN_LIMIT_PER_ADDRESS, LOGIN_LIMIT_PER_USER
from worker.web.dashboard.views import routes


@pytest.fixture
def web(redis_url: str, redis_client: redis.Redis) -> Iterator[Callable[..., TestClient]]:
    add_users(redis_client)
    with dashboard_clients(redis_url) as make:
        yield make


@pytest.fixture
def stack(redis_url: str) -> Iterator[Stack]:
    with stack_factory(redis_url) as make:
        yield make()


@pytest.mark.parametrize("secret", ["", "too-short-secret"])
def test_the_dashboard_needs_a_long_secret(redis_url: str, secret: str) -> None:
    settings = dashboard_settings(redis_url, SENDCLOUD_WEB_SECRET=secret)
    with pytest.raises(ConfigurationError, match="SENDCLOUD_WEB_SECRET: must be at least 32"):
        dashboard_app(settings)


def test_every_route_without_a_session_is_refused(web: Callable[..., TestClient]) -> None:
    client = web()
    checked = 0
    for route in routes():
        assert isinstance(route, Route)
        if route.path in ("/login", "/logout"):  # open to all; logout ends only one's own
            continue
        path = "/dashboard" + route.path.replace("{campaign_id}", "spring")
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            response = client.request(method, path, follow_redirects=False)
            checked += 1
            if method == "POST" or path.endswith(".json"):
                assert response.status_code == 401, (method, path)
                assert response.json() == {"error": "login required"}
            else:
                assert response.status_code == 303, (method, path)
                assert response.headers["location"].startswith("/dashboard/login?next=")
    assert checked == len(routes()) - 3  # all but the login page, the login, the logout


def test_login_sets_an_httponly_samesite_cookie_and_a_wrong_password_is_refused(
    web: Callable[..., TestClient],
) -> None:
    client = web()
    refused = log_in(client, "olga", "not-her-password")
    assert refused.status_code == 401
    assert "Wrong name or password." in refused.text
    unknown = log_in(client, "olga", "x")
    assert unknown.status_code == 401

    accepted = log_in(client, "olga")
    assert accepted.status_code == 303
    assert accepted.headers["location"] == "/dashboard/"
    cookie = accepted.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    page = client.get("/dashboard/")
    assert page.status_code == 200
    assert "olga (operator)" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_the_cookie_is_secure_when_tls_is_on(web: Callable[..., TestClient]) -> None:
    client = web(SENDCLOUD_WEB_TLS="1")
    cookie = log_in(client, "olga").headers["set-cookie"].lower()
    assert "; secure" in cookie


def test_a_login_form_without_its_csrf_token_is_refused(web: Callable[..., TestClient]) -> None:
    client = web()
    client.get("/dashboard/login")
    response = client.post("/dashboard/login", data={"name": "olga",
                                                     "password": PASSWORDS["olga"]})
    assert response.status_code == 403
    assert client.get("/dashboard/", follow_redirects=False).status_code == 303


def test_an_action_without_the_csrf_token_changes_nothing(
    web: Callable[..., TestClient], stack: Stack,
) -> None:
    start_campaign("spring", TEMPLATE_ID, [mainland(i) for i in range(3)], producer=stack.producer)
    client = web()
    log_in(client, "olga")
    for token in (None, "forged-token"):
        data = {} if token is None else {"csrf_token": token}
        response = client.post("/dashboard/campaigns/spring/cancel", data=data)
        assert response.status_code == 403
        assert "CSRF token missing or wrong" in response.text
    assert not campaign_status("spring", producer=stack.producer).cancel_requested


def test_a_viewer_sees_but_may_not_act(web: Callable[..., TestClient], stack: Stack) -> None:
    start_campaign("spring", TEMPLATE_ID, [mainland(i) for i in range(3)], producer=stack.producer)
    client = web()
    log_in(client, "vic")
    page = client.get("/dashboard/campaigns/spring")
    assert page.status_code == 200
    assert 'id="cancel"' not in page.text
    response = client.post("/dashboard/campaigns/spring/cancel",
                           data={"csrf_token": csrf_of(page.text)})
    assert response.status_code == 403
    assert "vic is a viewer" in response.text
    assert not campaign_status("spring", producer=stack.producer).cancel_requested

    operator = web()
    log_in(operator, "olga")
    page = operator.get("/dashboard/campaigns/spring")
    done = operator.post("/dashboard/campaigns/spring/cancel",
                         data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert done.status_code == 303
    assert campaign_status("spring", producer=stack.producer).cancel_requested


def test_a_removed_user_loses_the_session_at_once(
    web: Callable[..., TestClient], redis_client: redis.Redis,
) -> None:
    from worker.web.dashboard.users import remove_user

    client = web()
    log_in(client, "vic")
    assert client.get("/dashboard/").status_code == 200
    remove_user(redis_client, "vic")
    assert client.get("/dashboard/", follow_redirects=False).status_code == 303
    assert client.get("/dashboard/overview.json").status_code == 401


def test_failed_logins_are_limited_per_user_by_redis_time(
    web: Callable[..., TestClient], redis_client: redis.Redis,
) -> None:
    client = web()
    for _ in range(LOGIN_LIMIT_PER_USER):
        assert log_in(client, "olga", "wrong-password").status_code == 401
    refused = log_in(client, "olga")  # the right password, past the limit
    assert refused.status_code == 429
    assert 0 < int(refused.headers["retry-after"]) <= 15 * 60
    assert "Too many failed logins" in refused.text
    counters = list(redis_client.scan_iter("sendcloud:web:login_failures:*"))
    assert len(counters) == 2
    assert all(0 < redis_client.pttl(key) <= 15 * 60 * 1000 for key in counters)
    assert log_in(client, "vic").status_code == 303  # another name from the same address


def test_failed_logins_are_limited_per_address(web: Callable[..., TestClient]) -> None:
    client = web()
    for i in range(LOGIN_LIMIT_PER_ADDRESS):
        assert log_in(client, "olga" if i % 2 else "vic", "wrong-password").status_code \
            in (401, 429)
    assert log_in(client, "vic").status_code == 429


def test_a_successful_login_clears_the_names_count(web: Callable[..., TestClient]) -> None:
    client = web()
    for _ in range(LOGIN_LIMIT_PER_USER - 1):
        log_in(client, "olga", "wrong-password")
    assert log_in(client, "olga").status_code == 303
    for _ in range(LOGIN_LIMIT_PER_USER - 1):
        assert log_in(client, "olga", "wrong-password").status_code == 401


def test_the_login_redirects_only_inside_the_dashboard(web: Callable[..., TestClient]) -> None:
    client = web()
    token = csrf_of(client.get("/dashboard/login").text)
    for target, expected in (("/dashboard/campaigns", "/dashboard/campaigns"),
                             ("https://evil.example/", "/dashboard/"),
                             ("//evil.example/dashboard/", "/dashboard/")):
        client.cookies.clear()
        token = csrf_of(client.get("/dashboard/login").text)
        response = client.post("/dashboard/login", data={
            "name": "olga", "password": PASSWORDS["olga"], "csrf_token": token, "next": target},
            follow_redirects=False)
        assert response.headers["location"] == expected, target
    assert re.fullmatch(r"[\w-]+", token)
