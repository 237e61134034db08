"""Every Redis client of the worker side is made here, from the settings.

One place decides how the product reaches Redis (the URL today; the deployment's failover
settings where they are set), so that the worker processes, the CLI, the web process and the
metrics exposition all follow the same configuration. ``fail_fast`` clients (health checks,
scrapes, the web process's request path) give up after one quick retry instead of hanging.
"""

from __future__ import annotations

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from worker.settings import Settings


def redis_client(settings: Settings, *, timeout: float | None = None,
                 retries: int | None = None) -> redis.Redis:
    """A blocking client; ``timeout`` bounds connect and each command, ``retries`` on a new
    connection after a dropped one (redis-py's default when None)."""
    kwargs: dict[str, object] = {}
    if timeout is not None:
        kwargs.update(socket_connect_timeout=timeout, socket_timeout=timeout)
    if retries is not None:
        kwargs["retry"] = Retry(NoBackoff(), retries)
    return redis.Redis.from_url(settings.redis_url, **kwargs)


def async_redis_client(settings: Settings, *, timeout: float | None = None,
                       retries: int | None = None) -> aioredis.Redis:
    """The asyncio twin of :func:`redis_client`, for the web process."""
    kwargs: dict[str, object] = {}
    if timeout is not None:
        kwargs.update(socket_connect_timeout=timeout, socket_timeout=timeout)
    if retries is not None:
        kwargs["retry"] = AsyncRetry(NoBackoff(), retries)
    return aioredis.Redis.from_url(settings.redis_url, **kwargs)  # type: ignore[arg-type]
