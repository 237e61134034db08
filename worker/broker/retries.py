"""Dramatiq's ``Retries``, for a broker that may be away when a retry is due to be enqueued.

A job that gives its claim back raises ``dramatiq.Retry``; ``Retries`` then enqueues the
retry. If Redis is down at that moment the enqueue fails, Dramatiq logs a CRITICAL
"Unexpected failure in after_process_message" and the message is acknowledged: the retry is
gone. Nothing is lost for all that: the job's record stays in the reconcile index, and the
reconciler (worker.jobs.reconciler) drives it again once Redis answers; an emailStatus poll is
enqueued again by the next scheduler tick. So the case is handled here, and said as a
warning with the job's key rather than as a crash. The same holds for RabbitMQ, whose
publishes raise Dramatiq's ``ConnectionClosed`` once their retries are spent.
"""

from __future__ import annotations

from typing import Any

import redis
import structlog
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import Retries

log = structlog.get_logger("worker.broker.retries")


class ReconciledRetries(Retries):
    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        try:
            super().after_process_message(broker, message, result=result, exception=exception)
        except (redis.ConnectionError, redis.TimeoutError, ConnectionClosed) as exc:
            log.warning("job.retry_not_enqueued", error=type(exc).__name__,
                        message_id=message.message_id,
                        note="the broker is away; the reconciler drives the job again")
