"""The job actors: declared by :func:`declare_job_actors` on a given broker, never at import.

Each actor is a thin shell around :meth:`JobRunner.run`; queue and actor names come from
:mod:`producers.contract`, so producers enqueue by name without importing the worker.

Dramatiq's retry bookkeeping is made explicit here (see :mod:`worker.broker` for the rest):

* every SendCloud outcome that needs another attempt raises ``dramatiq.Retry(delay=...)`` with a
  delay the runner chose; ``retry_when`` always lets those through, because the attempt budget
  (``SENDCLOUD_JOB_MAX_ATTEMPTS``) is counted in the job's idempotency record, where a pause or
  a busy duplicate does not use it up;
* :class:`PermanentJobFailure` is in ``throws``: the message is failed at once and the
  RedisBroker moves it to the dead-letter set (``dramatiq:<queue>.XQ``), with the reason added
  to its options (:mod:`worker.broker.dead_letters`);
* any other exception that escapes the runner (Redis unreachable, so the job could not even
  be claimed or given back; an attempt cut off by its time limit) becomes a ``Retry`` with
  backoff as well. Dramatiq's own count of retries includes pauses and busy copies, so letting
  it dead-letter such a job could leave it with no final record; instead the job waits until
  Redis answers, and its attempt budget in the record decides how it ends.

Environment variables that shape job execution (defaults; the test suite uses the small values
in brackets so retries take milliseconds):

=======================================  ======  ===============================================
``SENDCLOUD_JOB_MAX_ATTEMPTS``           8       attempts before a transient failure is final
``SENDCLOUD_RETRY_BASE_DELAY``           5 s     first backoff between attempts [0.02]
``SENDCLOUD_RETRY_MAX_DELAY``            600 s   backoff cap [0.1]
``SENDCLOUD_CALL_ATTEMPTS``              3       tries of one call within an attempt (tenacity)
``SENDCLOUD_CALL_BASE_DELAY``            0.2 s   first pause between those tries [0.001]
``SENDCLOUD_CALL_MAX_DELAY``             2 s     cap of those pauses [0.004]
``SENDCLOUD_JOB_LEASE``                  120 s   claim lease, also an attempt's time limit [10]
``SENDCLOUD_DEDUP_SAFETY_MARGIN``        300 s   margin under SendCloud's 1-hour dedup window
``SENDCLOUD_PAUSE_SECONDS``              300 s   account pause after a 499 [30]
``SENDCLOUD_DAILY_LIMIT_ACTION``         defer   498: ``defer`` to the next day, or ``fail``
``SENDCLOUD_BROKER_HEARTBEAT_TIMEOUT``   60 s    a silent worker's messages are redelivered [2]
``SENDCLOUD_BROKER_MAINTENANCE_CHANCE``  1000    per million commands: redelivery check [100000]
=======================================  ======  ===============================================

Holds the actors (``sms``, ``codes``, ``members``), the ``runner`` every attempt goes through,
the job's ``idempotency`` record (claim and finish scripts), account ``pause``, result
``results`` records and ``campaign`` counters. May import ``worker.sendcloud``,
``worker.runtime``, the process plumbing and ``producers``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dramatiq
import structlog
from dramatiq.middleware import CurrentMessage, TimeLimitExceeded

from worker.jobs import policy
from worker.jobs.codes import CodeJob, VoiceCodeJob
from worker.jobs.idempotency import BrokerAck
from worker.jobs.members import MembersJob
from worker.jobs.runner import JobRunner, JobType, Payload, PermanentJobFailure
from worker.jobs.sms import SmsJob
from worker.runtime import Runtime

JOB_TYPES: tuple[JobType, ...] = (SmsJob(), CodeJob(), VoiceCodeJob(), MembersJob())

log = structlog.get_logger("worker.jobs")


def _retry_when(max_attempts: int) -> Any:
    def retry_when(retries: int, exception: BaseException) -> bool:
        return isinstance(exception, dramatiq.Retry) or retries < max_attempts

    return retry_when


def declare_job_actors(
    broker: dramatiq.Broker, runtime: Runtime, *, runner: JobRunner | None = None
) -> dict[str, dramatiq.Actor[..., None]]:
    """Declare the SMS, code, voice-code and member actors on ``broker``; by actor name."""
    runner = runner or JobRunner(runtime)
    settings = runtime.settings
    actors: dict[str, dramatiq.Actor[..., None]] = {}
    for job in JOB_TYPES:
        decorate = dramatiq.actor(
            actor_name=job.actor_name,
            queue_name=job.queue_name,
            broker=broker,
            throws=(PermanentJobFailure,),
            retry_when=_retry_when(settings.job_max_attempts),
            min_backoff=int(settings.retry_base_delay * 1000),
            max_backoff=int(settings.retry_max_delay * 1000),
        )
        actors[job.actor_name] = decorate(_make_fn(runner, job, broker))
    return actors


def _make_fn(runner: JobRunner, job: JobType, broker: dramatiq.Broker
             ) -> Callable[[Payload], None]:
    # A broker that lets the finish acknowledge the message (worker.broker's Redis broker).
    ack_for: Callable[[Any], BrokerAck | None] | None = getattr(broker, "ack_in_finish", None)

    def perform(payload: Payload) -> None:
        message = CurrentMessage.get_current_message()
        if message is None:
            raise RuntimeError("the CurrentMessage middleware is required")
        try:
            runner.run(job, payload, message.message_id,
                       None if ack_for is None else ack_for(message))
        except (dramatiq.Retry, PermanentJobFailure):
            raise
        except (Exception, TimeLimitExceeded) as exc:
            retries = int(message.options.get("retries", 0))
            delay = policy.backoff(retries + 1, runner.settings, runner.jitter)
            log.error("job.infrastructure_error", error=type(exc).__name__,
                      retry_in_s=round(delay, 3))
            raise dramatiq.Retry(delay=max(1, int(delay * 1000))) from exc

    perform.__name__ = job.actor_name
    perform.__qualname__ = job.actor_name
    return perform


__all__ = ["JOB_TYPES", "JobRunner", "PermanentJobFailure", "declare_job_actors"]
