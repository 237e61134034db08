"""Where the product's Redis is: one URL, or a master that Redis Sentinel names.

Without Sentinel, ``REDIS_URL`` says everything. With ``SENDCLOUD_REDIS_SENTINELS`` set, the
sentinels say where the master is (asked again after every failover), and ``REDIS_URL`` still
says everything else:

==================================  =========================================================
``SENDCLOUD_REDIS_SENTINELS``       ``host:port`` of each sentinel, comma-separated
``SENDCLOUD_REDIS_MASTER``          the master's name in the sentinels' configuration
``SENDCLOUD_REDIS_SENTINEL_PASSWORD`` the sentinels' own password (``requirepass`` of the
                                    sentinel processes), if any
``REDIS_URL``                       database number, username and password of the data nodes,
                                    ``rediss://`` for TLS (and its query options); its host
                                    and port are not used
``SENDCLOUD_REDIS_WAIT_REPLICAS``   replicas that must acknowledge a write that decides
                                    whether an SMS may go out (default 1 under Sentinel, else 0)
``SENDCLOUD_REDIS_WAIT_TIMEOUT_MS`` how long such a write waits for them (default 500)
==================================  =========================================================

Producers read these from the environment (they never import the worker); the worker's
settings read them with the same parser, so both sides agree on every value and rule.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.connection import parse_url
from redis.sentinel import Sentinel

from producers.errors import SettingError

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_WAIT_TIMEOUT_MS = 500
#: A WAIT must end well inside every client's socket timeout (the web API's is 5 s): a call
#: that timed out would leave its reservation on the primary without the undo.
MAX_WAIT_TIMEOUT_MS = 2000
SENTINELS_VARIABLE = "SENDCLOUD_REDIS_SENTINELS"
MASTER_VARIABLE = "SENDCLOUD_REDIS_MASTER"
SENTINEL_PASSWORD_VARIABLE = "SENDCLOUD_REDIS_SENTINEL_PASSWORD"
WAIT_REPLICAS_VARIABLE = "SENDCLOUD_REDIS_WAIT_REPLICAS"
WAIT_TIMEOUT_VARIABLE = "SENDCLOUD_REDIS_WAIT_TIMEOUT_MS"
_SCHEMES = ("redis://", "rediss://", "unix://")


@dataclass(frozen=True)
class RedisTarget:
    """How to reach the product's Redis, and how many replicas its decisive writes wait for."""

    url: str = field(default=DEFAULT_REDIS_URL, repr=False)  # may hold the data password
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = ""
    sentinel_password: str = field(default="", repr=False)
    wait_replicas: int = 0
    wait_timeout_ms: int = DEFAULT_WAIT_TIMEOUT_MS

    @property
    def uses_sentinel(self) -> bool:
        return bool(self.sentinels)


def _sentinels(raw: str) -> tuple[tuple[str, int], ...]:
    rule = "must be comma-separated host:port pairs, e.g. 10.0.0.1:26379,10.0.0.2:26379"
    found: list[tuple[str, int]] = []
    for part in raw.split(","):
        host, sep, port = part.strip().rpartition(":")
        host = host.strip("[]")  # an IPv6 address may come bracketed
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingError(SENTINELS_VARIABLE, f"{rule}; got {part.strip()!r}")
        found.append((host, int(port)))
    return tuple(found)


def _whole(env: Mapping[str, str], name: str, default: int, *, minimum: int,
           maximum: int | None = None) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < minimum or (maximum is not None and int(raw) > maximum):
        bound = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
        raise SettingError(name, f"must be a whole number {bound}, got {raw!r}")
    return int(raw)


def parse_redis_target(env: Mapping[str, str], url: str | None = None) -> RedisTarget:
    """The target the environment describes (``url`` in place of ``REDIS_URL`` when given).

    Raises :class:`~producers.errors.SettingError` naming the variable and the rule.
    """
    url = (url or env.get("REDIS_URL") or "").strip() or DEFAULT_REDIS_URL
    if not url.startswith(_SCHEMES):
        raise SettingError("REDIS_URL", f"must start with {', '.join(_SCHEMES)} "
                           "(e.g. redis://host:6379/0)")
    raw = env.get(SENTINELS_VARIABLE, "").strip()
    sentinels = _sentinels(raw) if raw else ()
    master = env.get(MASTER_VARIABLE, "").strip()
    if sentinels and not master:
        raise SettingError(MASTER_VARIABLE, f"is required when {SENTINELS_VARIABLE} is set: "
                           "the master's name in the sentinels' configuration")
    if master and not sentinels:
        raise SettingError(SENTINELS_VARIABLE, f"is required when {MASTER_VARIABLE} is set: "
                           "the sentinels' host:port list")
    if any(c.isspace() for c in master):
        raise SettingError(MASTER_VARIABLE, "must be one word, the name in `sentinel monitor`")
    if sentinels and url.startswith("unix://"):
        raise SettingError("REDIS_URL", f"must be redis:// or rediss:// when {SENTINELS_VARIABLE}"
                           " is set: the sentinels name TCP addresses")
    return RedisTarget(
        url=url,
        sentinels=sentinels,
        master=master,
        sentinel_password=env.get(SENTINEL_PASSWORD_VARIABLE, ""),
        wait_replicas=_whole(env, WAIT_REPLICAS_VARIABLE, 1 if sentinels else 0, minimum=0),
        wait_timeout_ms=_whole(env, WAIT_TIMEOUT_VARIABLE, DEFAULT_WAIT_TIMEOUT_MS, minimum=1,
                               maximum=MAX_WAIT_TIMEOUT_MS),
    )


def redis_target_from_env(url: str | None = None) -> RedisTarget:
    return parse_redis_target(os.environ, url)


def node_kwargs(url: str) -> dict[str, Any]:
    """What ``url`` says of the data nodes besides where they are: db, credentials, TLS.

    Sentinel's pools pick the connection class themselves (``ssl`` chooses the TLS one).
    """
    kwargs = parse_url(url)
    kwargs.pop("host", None)
    kwargs.pop("port", None)
    if url.startswith("rediss://"):
        kwargs.pop("connection_class", None)
        kwargs["ssl"] = True
    return kwargs


def sentinel_kwargs(target: RedisTarget, extra: Mapping[str, Any]) -> dict[str, Any]:
    """The sentinels' own connection options: their password, and the caller's timeouts."""
    kwargs = {name: value for name, value in extra.items() if name.startswith("socket_")}
    if target.sentinel_password:
        kwargs["password"] = target.sentinel_password
    return kwargs


def master_for(target: RedisTarget, sentinel_class: Any, **kwargs: Any) -> Any:
    """The client of the master the target's sentinels name, from ``sentinel_class``
    (redis-py's ``Sentinel``, or its asyncio twin): the sentinels asked with their own
    password and the caller's timeouts, the data nodes with ``REDIS_URL``'s options."""
    sentinel = sentinel_class(list(target.sentinels),
                              sentinel_kwargs=sentinel_kwargs(target, kwargs),
                              **node_kwargs(target.url))
    return sentinel.master_for(target.master, **kwargs)


def redis_from_target(target: RedisTarget, **kwargs: Any) -> redis.Redis:
    """A blocking client of the target's master. Under Sentinel it asks the sentinels where the
    master is whenever it connects, and drops its connections when the master they name
    changes; a command caught in a failover raises ``redis.ConnectionError`` (also for a
    demoted master's ``READONLY`` answer), which callers treat as Redis being away."""
    if not target.uses_sentinel:
        return redis.Redis.from_url(target.url, **kwargs)
    client: redis.Redis = master_for(target, Sentinel, **kwargs)
    return client


def redis_from_env(url: str | None = None, **kwargs: Any) -> redis.Redis:
    """:func:`redis_from_target` for the environment's target (``url`` for ``REDIS_URL``)."""
    return redis_from_target(redis_target_from_env(url), **kwargs)
