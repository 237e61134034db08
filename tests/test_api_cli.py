"""``sendcloud-jobs web api-key create|list|revoke``: the key printed once, stored hashed,
listed without it, revoked at once; mistakes are one line."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
import redis
import redis.asyncio as aioredis

from worker.cli import EXIT_USAGE, main
from worker.web.api.keys import KeyStore, digest, record_key


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)


def verify(redis_url: str, token: str) -> object:
    async def check() -> object:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return await KeyStore(client).verify(token)
        finally:
            await client.aclose()

    return asyncio.run(check())


def test_create_list_revoke(capsys: pytest.CaptureFixture[str], redis_url: str,
                            redis_client: redis.Redis) -> None:
    assert main(["web", "api-key", "create", "--name", "shop php", "--scope", "send"]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    key_id = re.fullmatch(r"scj_([0-9a-f]{12})_[A-Za-z0-9_-]{43}", token).group(1)  # type: ignore[union-attr]
    assert f"API key {key_id} ('shop php', scope send) created" in err and token not in err
    assert redis_client.hget(record_key(key_id), "digest") == digest(token).encode()
    key = verify(redis_url, token)
    assert getattr(key, "scope", None) == "send"

    assert main(["web", "api-key", "list", "--json"]) == 0
    [listed] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (listed["id"], listed["name"], listed["scope"]) == (key_id, "shop php", "send")
    assert listed["last_used"] is not None  # the verify above
    assert main(["web", "api-key", "list"]) == 0
    table = capsys.readouterr().out
    assert key_id in table and token not in table and digest(token) not in table

    assert main(["web", "api-key", "revoke", key_id]) == 0
    assert verify(redis_url, token) is None
    assert main(["web", "api-key", "revoke", key_id]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"ID: no API key '{key_id}'" in err
    assert main(["web", "api-key", "list"]) == 0
    assert capsys.readouterr().out == "no API keys\n"


def test_a_bad_name_or_scope_is_one_line(capsys: pytest.CaptureFixture[str],
                                         redis_client: redis.Redis) -> None:
    assert main(["web", "api-key", "create", "--name", " ", "--scope", "send"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("sendcloud-jobs: error: name: must be 1-64 printable") and \
        err.count("\n") == 1
    with pytest.raises(SystemExit) as exited:
        main(["web", "api-key", "create", "--name", "x", "--scope", "root"])
    assert exited.value.code == EXIT_USAGE
    assert "invalid choice: 'root'" in capsys.readouterr().err
    assert redis_client.keys("sendcloud:api:*") == []
