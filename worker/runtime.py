"""What every actor needs at run time: settings, a Redis client and a SendCloud client.

Actors are declared by factories (``declare_*(broker, runtime)``) instead of at import time, so
a test can build a fresh broker and runtime, and the embedded demo can swap in its own Redis and
an in-process simulator without touching globals.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis

from worker.settings import Settings

if TYPE_CHECKING:
    from worker.sendcloud.client import SendCloudClient


class Runtime:
    def __init__(
        self,
        settings: Settings,
        redis_client: redis.Redis,
        client_factory: Callable[[], SendCloudClient],
    ) -> None:
        self.settings = settings
        self.redis = redis_client
        self._client_factory = client_factory
        self._local = threading.local()

    def client(self) -> SendCloudClient:
        """This thread's SendCloud client: httpx clients are not shared across worker threads."""
        client: SendCloudClient | None = getattr(self._local, "client", None)
        if client is None:
            client = self._client_factory()
            self._local.client = client
        return client
