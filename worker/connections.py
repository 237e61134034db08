"""Every Redis client of the worker side is made here, from the settings.

One place decides how the product reaches Redis: ``REDIS_URL``, or the master Redis Sentinel
names when ``SENDCLOUD_REDIS_SENTINELS`` is set (``producers.redis_client`` reads both, for
producers and workers alike), so that the worker processes, the CLI, the web process and the
metrics exposition all follow the same configuration, and a failover. ``fail_fast`` clients
(health checks, scrapes, the web process's request path) give up after one quick retry instead
of hanging.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from producers.redis_client import master_for, redis_from_target
from worker.settings import Settings


def _timeouts(timeout: float | None) -> dict[str, Any]:
    if timeout is None:
        return {}
    return {"socket_connect_timeout": timeout, "socket_timeout": timeout}


def redis_client(settings: Settings, *, timeout: float | None = None,
                 retries: int | None = None) -> redis.Redis:
    """A blocking client; ``timeout`` bounds connect and each command, ``retries`` on a new
    connection after a dropped one (redis-py's default when None). Under Sentinel, the
    sentinels are asked with the same timeout."""
    kwargs = _timeouts(timeout)
    if retries is not None:
        kwargs["retry"] = Retry(NoBackoff(), retries)
    return redis_from_target(settings.redis_target, **kwargs)


def async_redis_client(settings: Settings, *, timeout: float | None = None,
                       retries: int | None = None) -> aioredis.Redis:
    """The asyncio twin of :func:`redis_client`, for the web process."""
    kwargs: dict[str, Any] = _timeouts(timeout)
    if retries is not None:
        kwargs["retry"] = AsyncRetry(NoBackoff(), retries)
    target = settings.redis_target
    if not target.uses_sentinel:
        return aioredis.Redis.from_url(target.url, **kwargs)
    client: aioredis.Redis = master_for(target, AsyncSentinel, **kwargs)
    return client
