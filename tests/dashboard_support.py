"""Shared by the dashboard's tests: its settings, users and a logged-in TestClient."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from starlette.routing import Mount
from starlette.testclient import TestClient

from tests.webhooks import MAIL_KEY, SMS_KEY
from worker.settings import Settings
from worker.web.app import create_app
from worker.web.dashboard.app import dashboard_app
from worker.web.dashboard.users import add_user

WEB_SECRET = "dashboard-test-secret-0123456789abcdef"
PASSWORDS = {"olga": "operator-password-1", "vic": "viewer-password-22"}
ROLES = {"olga": "operator", "vic": "viewer"}


def dashboard_env(redis_url: str, **env: str) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "SENDCLOUD_SMS_HOOK_KEY": SMS_KEY,
            "SENDCLOUD_MAIL_HOOK_KEY": MAIL_KEY, "SENDCLOUD_WEB_SECRET": WEB_SECRET, **env}


def dashboard_settings(redis_url: str, **env: str) -> Settings:
    return Settings.from_env(dashboard_env(redis_url, **env))


def add_users(client: redis.Redis) -> None:
    for name, password in PASSWORDS.items():
        add_user(client, name, password, ROLES[name])


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def log_in(client: TestClient, name: str, password: str | None = None) -> Any:
    token = csrf_of(client.get("/dashboard/login").text)
    return client.post("/dashboard/login", data={
        "name": name, "password": PASSWORDS[name] if password is None else password,
        "csrf_token": token, "next": "/dashboard/"}, follow_redirects=False)


@contextmanager
def dashboard_clients(redis_url: str) -> Iterator[Callable[..., TestClient]]:
    """``make(**env)`` → a TestClient of ``sendcloud-jobs web --dashboard``'s app (the
    ``SENDCLOUD_*`` settings as keyword arguments), closed at the end."""
    made: list[TestClient] = []

    def make(**env: str) -> TestClient:
        settings = dashboard_settings(redis_url, **env)
        app = create_app(settings, mounts=[Mount("/dashboard", app=dashboard_app(settings))])
        client = TestClient(app, base_url="http://testserver")
        client.__enter__()
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            client.__exit__(None, None, None)
