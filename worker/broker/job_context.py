"""Bind every log line written while a message is processed to its job.

Each line carries ``job_key`` (the idempotency key from the payload), ``message_id`` and
``actor``, including Dramatiq's own lines about the message (retries, failures), because this
middleware is first in the broker's list: its ``before`` hook runs first and its ``after`` hooks
run last. Bindings live in structlog's contextvars, which are per worker thread.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from typing import Any

from dramatiq import Broker, Middleware

from worker.logs import bind_job


def job_key(message: Any) -> str:
    payload = message.args[0] if message.args else message.kwargs.get("payload")
    if isinstance(payload, dict) and payload.get("key") is not None:
        return str(payload["key"])
    return "?"


class JobContext(Middleware):
    def __init__(self) -> None:
        self._local = threading.local()

    def _stack(self) -> list[AbstractContextManager[None]]:
        stack: list[AbstractContextManager[None]] | None = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def before_process_message(self, broker: Broker, message: Any) -> None:
        binding = bind_job(key=job_key(message), message_id=message.message_id,
                           actor=message.actor_name)
        binding.__enter__()
        self._stack().append(binding)

    def _unbind(self) -> None:
        stack = self._stack()
        if stack:
            stack.pop().__exit__(None, None, None)

    def after_process_message(
        self, broker: Broker, message: Any, *, result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self._unbind()

    def after_skip_message(self, broker: Broker, message: Any) -> None:
        self._unbind()
