"""One attempt of a job: claim it, call SendCloud once (with short retries), decide what follows.

Every path ends in exactly one of:

* a final record (``JobLedger.finish``): sent, partial, duplicate, done, failed, expired,
  needs_review; a permanent error also raises :class:`PermanentJobFailure`, which the actors
  declare in ``throws`` so Dramatiq dead-letters the message at once (no retries);
* ``dramatiq.Retry(delay=...)`` after giving the claim back: the delay is computed here
  (:mod:`worker.jobs.policy`), so Dramatiq's own backoff is never used for SendCloud failures;
  on RabbitMQ a wait longer than ``SENDCLOUD_PARK_AFTER`` is *parked* instead: the claim is
  given back with its due time, the message is acknowledged, and the reconciler sends a copy
  of the job from its record when it is due (a delayed message would be held unacknowledged
  by this worker, and RabbitMQ's consumer_timeout requeues what is held for too long);
* nothing at all, for a copy of a job that is already final ("replayed").

What each SendCloud error does:

==========================  =======================================================================
DuplicateRequestError       (400) SendCloud already took this sendRequestId: ``duplicate``, success
TransportError              no reply, the request may have taken effect: retry with backoff, kept
                            inside the 1-hour dedup window (:mod:`worker.jobs.idempotency`)
ServerError, ThrottledError retry with backoff; after ``SENDCLOUD_JOB_MAX_ATTEMPTS``: ``failed``
PhoneMinuteLimitError       (496) retry after >= 60 s
PhoneDailyLimitError        (498) retry after the next Asia/Shanghai midnight, or ``failed`` at once
                            when ``SENDCLOUD_DAILY_LIMIT_ACTION=fail``
QuotaError                  (499) pause the account (:mod:`worker.jobs.pause`), keep the message,
                            retry after the pause; the attempt is not counted
anything else               permanent: ``failed`` with statusCode and message, dead-lettered
==========================  =======================================================================

A verification code never goes out late: a code job that starts after its ``expires_at``, or
whose next attempt would, ends as ``expired``.
"""

from __future__ import annotations

import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import dramatiq
import redis
import structlog

from producers.chunk_results import compact
from producers.contract import SMS_RESULTS_STREAM
from producers.replication import NotReplicated
from worker import metrics
from worker.jobs import policy
from worker.jobs.campaign import CANCELLED_MESSAGE, cancel_requested
from worker.jobs.idempotency import (
    UNREPLICATED_CLAIM_RETRY,
    BrokerAck,
    Claim,
    JobLedger,
    window_left,
)
from worker.jobs.pause import AccountPause
from worker.jobs.results import Ending, accepted_sms_ids
from worker.jobs.verification import count_verification_sent
from worker.runtime import Runtime
from worker.sendcloud import codes, errors
from worker.sendcloud.client import SendCloudClient
from worker.sendcloud.retries import call_with_retries
from worker.settings import ConfigurationError, Settings

log = structlog.get_logger("worker.jobs")

Payload = Mapping[str, Any]
Record = dict[str, Any]


class PermanentJobFailure(Exception):
    """A job failed for good; its final record is written. Raised so the message is dead-lettered.

    ``status_code`` and ``message`` are SendCloud's; they are kept on the dead-lettered message.
    """

    def __init__(self, status_code: int | None, message: str, error: str) -> None:
        self.status_code = status_code
        self.message = message
        self.error = error
        super().__init__(f"{error}: {message} (statusCode {status_code})")


class JobType(ABC):
    """What differs between SMS, code, voice-code and member jobs."""

    actor_name: str
    queue_name: str
    stream: str
    #: Sends an SMS with a sendRequestId: the account pause and the 1-hour rule apply.
    sends_sms: bool

    @abstractmethod
    def kind(self, payload: Payload) -> str: ...

    def expires_at(self, payload: Payload) -> float | None:
        return None

    def prepare(self, payload: Payload, settings: Settings) -> Payload:
        """The payload as the call needs it, made before anything is sent (a sealed code is
        unsealed here, in memory only); an error here leaves nothing in doubt."""
        return payload

    @abstractmethod
    def call(self, client: SendCloudClient, payload: Payload, request_id: str) -> Any: ...

    @abstractmethod
    def success(self, payload: Payload, result: Any, *, attempts: int, now: float
                ) -> tuple[str, Record]:
        """The outcome and final record of a successful call."""

    @abstractmethod
    def failure(self, payload: Payload, end: Ending, error: errors.SendCloudError | None
                ) -> Record:
        """The final record of a job that ended without a successful call."""


class ClaimLost(Exception):
    """Another attempt holds the job's claim now: this one must not call SendCloud or write."""


class _WindowClosed(Exception):
    """A resend would fall outside SendCloud's 1-hour sendRequestId window."""


@dataclass
class _Attempt:
    job: JobType
    payload: Payload
    key: str
    message_id: str
    claim: Claim
    #: Redis's time when the claim was made: the attempt's start.
    started: float
    #: This process's monotonic reading at that moment (elapsed time only, never a date).
    started_mono: float = 0.0
    #: SendCloud has been called: from here on, an error may follow a send that took effect.
    calling: bool = False
    #: A try of this attempt got no usable reply: SendCloud may have accepted it.
    no_reply: bool = False
    #: Tries of the call made so far in this attempt.
    tries: int = 0
    #: The broker's ack of the job's message, for the finish to do (None: the consumer does it).
    ack: BrokerAck | None = None

    @property
    def maybe_sent(self) -> bool:
        """This attempt or an earlier one may have been accepted by SendCloud."""
        return self.no_reply or self.claim.uncertain_since is not None


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def outcome_unknown(exc: errors.SendCloudError) -> bool:
    """No reply SendCloud can be held to: the request may have taken effect.

    No reply at all, an HTTP 5xx or body without a statusCode (a gateway answering for
    SendCloud), or a success code in a reply that could not be read.
    """
    if isinstance(exc, errors.TransportError):
        return True
    if isinstance(exc, errors.ServerError):
        return exc.code is None or codes.lookup(exc.code).kind.succeeded
    return False


def _describe(exc: BaseException) -> str:
    # Other exceptions may carry anything in their text; these name only a code or a setting.
    if isinstance(exc, errors.SendCloudError | ConfigurationError):
        return str(exc)
    return type(exc).__name__


class JobRunner:
    """Runs attempts. Time is Redis's: each attempt starts from the claim script's ``TIME`` and
    adds the elapsed time measured here, so no decision depends on this host's clock. A test
    may inject ``clock`` to travel in time; the scripts then take its readings."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.settings = settings
        self.clock = clock
        self.sleep = sleep
        self.jitter = jitter
        self.monotonic = monotonic
        self.ledger = JobLedger(
            runtime.redis,
            lease=settings.job_lease,
            ttl=settings.idempotency_ttl,
            maxlen=settings.results_maxlen,
            namespace=settings.request_id_namespace,
            max_age=settings.results_max_age,
            receipt_window=settings.receipt_window,
            wait_replicas=settings.redis_wait_replicas,
            wait_timeout_ms=settings.redis_wait_timeout_ms,
        )
        self.pause = AccountPause(
            runtime.redis,
            settings.sms_user,
            seconds=settings.pause_seconds,
            stream=SMS_RESULTS_STREAM,
            maxlen=settings.results_maxlen,
        )

    # -- entry -------------------------------------------------------------------------------

    def _given(self) -> float | None:
        """The injected clock's reading for a script, or None: the script reads Redis's."""
        return None if self.clock is None else self.clock()

    def now(self, a: _Attempt) -> float:
        """Redis's time now, as this attempt reckons it."""
        if self.clock is not None:
            return self.clock()
        return a.started + (self.monotonic() - a.started_mono)

    def run(self, job: JobType, payload: Payload, message_id: str,
            ack: BrokerAck | None = None) -> str | None:
        """Run one delivery of a job; the final outcome written, or None (replayed / lost).
        ``ack``: the finish also acknowledges the message, when the job ends with it returning."""
        key = str(payload["key"])
        enqueued = payload.get("enqueued_at")
        try:
            claim = self.ledger.claim(
                key, message_id, self._given(), kind=job.kind(payload),
                enqueued_at=float(enqueued) if isinstance(enqueued, int | float) else None,
                pause_key=self.pause.key if job.sends_sms else None,
            )
        except NotReplicated as exc:
            # Given back already: sending on a claim a failover may undo could send twice.
            log.warning("job.claim_not_replicated", replicas=exc.acknowledged, wanted=exc.wanted)
            raise dramatiq.Retry(delay=_ms(UNREPLICATED_CLAIM_RETRY + self.jitter())) from None
        if claim.status == "final":
            log.info("job.replayed", state=claim.final_state)
            return None
        if claim.status == "busy":
            delay = claim.busy_for + self.jitter()
            log.info("job.busy", retry_in_s=round(delay, 3))
            raise dramatiq.Retry(delay=_ms(delay))
        if claim.takeover:
            log.warning("job.takeover", attempts=claim.attempts,
                        uncertain_since=claim.uncertain_since)
        attempt = _Attempt(job, payload, key, message_id, claim, started=claim.now,
                           started_mono=self.monotonic(), ack=ack)
        try:
            try:
                return self._run_claimed(attempt)
            except (dramatiq.Retry, PermanentJobFailure, ClaimLost):
                raise
            except NotReplicated as exc:
                # The final record is on the primary; the retry's claim finds it there, or,
                # after a failover that lost it, sends again under the same sendRequestId.
                log.warning("job.finish_not_replicated", replicas=exc.acknowledged,
                            wanted=exc.wanted)
                raise dramatiq.Retry(delay=_ms(UNREPLICATED_CLAIM_RETRY + self.jitter())
                                     ) from None
            except ConfigurationError as exc:
                # A worker's setting is missing: said plainly, retried (it may be fixed soon).
                log.error("job.misconfigured", error=str(exc))
                return self._retry_or_fail(attempt, exc, uncertain=attempt.calling)
            except Exception as exc:
                # A bug or a Redis/infrastructure failure: give the claim back and retry like a
                # transient error; if it struck mid-call the send may have happened. Redis
                # away (a restart, a Sentinel failover's switch) needs no traceback.
                if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
                    log.warning("job.redis_unreachable", error=type(exc).__name__)
                else:
                    log.exception("job.unexpected_error", error=type(exc).__name__)
                return self._retry_or_fail(attempt, exc, uncertain=attempt.calling)
        except ClaimLost:
            # A newer attempt holds the claim (this one stalled past its lease, or its message
            # was delivered again): it alone may write the job's final record.
            log.warning("job.claim_lost", attempts=claim.attempts)
            return None

    def _run_claimed(self, a: _Attempt) -> str | None:
        job, payload, settings = a.job, a.payload, self.settings
        now = self.now(a)
        expires = job.expires_at(payload)
        if expires is not None and now >= expires:
            if job.sends_sms and a.maybe_sent:
                return self._needs_review(a, None, "the code expired after an attempt that may "
                                          "have been accepted")
            return self._end(a, "expired", None, "the code expired before it could be sent")
        if cancel_requested(self.runtime.redis, payload, a.claim.uncertain_since):
            return self._end(a, "cancelled", None, CANCELLED_MESSAGE)
        if job.sends_sms:
            left = window_left(a.claim.uncertain_since, now, settings.dedup_safety_margin)
            if left is not None and left <= 0:
                return self._needs_review(a, None, "an earlier attempt's outcome is unknown and "
                                          "SendCloud's 1-hour sendRequestId window has passed")
            paused = a.claim.paused_for
            if paused > 0:
                log.info("job.paused", retry_in_s=round(paused, 3))
                return self._reschedule(a, paused + self.jitter(), error=None, uncertain=False,
                                        minimum=paused, refund=True)
        request_id = a.claim.request_id
        client = self.runtime.client()
        prepared = job.prepare(payload, settings)

        def call_once() -> Any:
            self._recheck(a)
            try:
                return job.call(client, prepared, request_id)
            except errors.SendCloudError as exc:
                # Remembered across the in-call tries: the last one's error alone would hide
                # an earlier try that SendCloud may have accepted.
                if outcome_unknown(exc):
                    a.no_reply = True
                raise

        a.calling = True
        try:
            result = call_with_retries(
                call_once,
                attempts=settings.call_attempts,
                base_delay=settings.call_base_delay,
                max_delay=max(settings.call_max_delay, settings.call_base_delay),
                sleep=self.sleep,
                jitter=self.jitter,
            )
        except _WindowClosed:
            return self._needs_review(a, None, "an earlier try's outcome is unknown and "
                                      "SendCloud's 1-hour sendRequestId window has passed")
        except errors.DuplicateRequestError as exc:
            if job.sends_sms and not a.maybe_sent:
                # No attempt of this job can have been accepted, so SendCloud matched the id
                # to something else (a refused first request, another app): nothing is known
                # to have gone out.
                return self._needs_review(a, exc.code, "SendCloud answered 'duplicate request' "
                                          "although no earlier attempt can have been accepted")
            return self._end(a, "duplicate", exc.code, exc.message, exc)
        except errors.QuotaError as exc:
            if not job.sends_sms:
                return self._permanent(a, exc)
            return self._quota(a, exc)
        except errors.PhoneDailyLimitError as exc:
            if settings.daily_limit_action == "fail":
                return self._permanent(a, exc)
            delay = policy.daily_limit_delay(self.now(a), self.jitter)
            return self._reschedule(a, delay, error=exc, uncertain=a.no_reply, minimum=delay)
        except errors.PhoneMinuteLimitError as exc:
            return self._reschedule(a, policy.minute_limit_delay(self.jitter), error=exc,
                                    uncertain=a.no_reply, minimum=policy.MINUTE_LIMIT_DELAY)
        except errors.DeferredError as exc:
            return self._reschedule(a, exc.retry_after, error=exc, uncertain=a.no_reply,
                                    minimum=exc.retry_after)
        except errors.TransientError as exc:
            return self._retry_or_fail(a, exc, uncertain=a.no_reply)
        except errors.SendCloudError as exc:
            return self._permanent(a, exc)
        # `calling` stays set: an error from here on follows a send that took effect.
        outcome, record = job.success(payload, result, attempts=a.claim.attempts,
                                      now=self.now(a))
        return self._write(a, outcome, record)

    def _recheck(self, a: _Attempt) -> None:
        """Before each try: the claim is still this attempt's, and a resend is still covered.

        The first try follows its claim at once and is not checked again: within a second no
        other copy can have taken the claim (that needs the lease or the broker's heartbeat
        timeout to pass, both far longer).
        """
        a.tries += 1
        if a.tries == 1 and self.monotonic() - a.started_mono < 1.0:
            return
        seen = self.ledger.check(a.key, a.claim.token, self._given())
        if not seen.held:
            raise ClaimLost(a.key)
        a.started_mono -= (seen.now - self.now(a))  # re-anchor to Redis's clock
        if not a.job.sends_sms:
            return
        since = seen.uncertain_since
        if a.no_reply:
            since = a.started if since is None else min(since, a.started)
        left = window_left(since, seen.now, self.settings.dedup_safety_margin)
        if left is not None and left <= 0:
            raise _WindowClosed()

    # -- endings -----------------------------------------------------------------------------

    def _write(self, a: _Attempt, outcome: str, record: Record, *, acks: bool = True
               ) -> str | None:
        """The final record. ``acks``: the job's message is acknowledged after it (False when
        it is to be dead-lettered), so the finish may acknowledge it itself."""
        summary = None
        sms_ids = accepted_sms_ids(a.payload, record)
        if a.payload.get("campaign_id") is not None and "phones" in a.payload:
            # A campaign chunk keeps its recipients once and compactly (producers.chunk_results).
            if "recipients" in record:
                record, summary = compact(record, [str(p) for p in a.payload["phones"]])
            else:  # built compact already (worker.jobs.results.chunk_success_record)
                summary = {k: v for k, v in record.items() if k != "sms_ids_packed"}
        entry = self.ledger.finish(a.key, a.claim.token, self._given(), outcome=outcome,
                                   stream=a.job.stream, record=record,
                                   uncertain=a.no_reply, stream_record=summary,
                                   sms_ids=sms_ids, ack=a.ack if acks else None)
        if entry is None:
            # Another copy took the claim over (this one outlived its lease); it writes the record.
            log.warning("job.claim_lost", outcome=outcome)
            return None
        metrics.record_job_outcome(str(record.get("kind")), outcome)
        if outcome == "sent" and a.payload.get("verification_id"):
            count_verification_sent(self.runtime.redis, str(record.get("kind")))
        fields = {"outcome": outcome, "status_code": record.get("status_code"),
                  "attempts": a.claim.attempts, "entry": entry}
        if outcome == "needs_review":
            log.error("job.needs_review", key=a.key, reason=record.get("message"), **fields)
        elif outcome in ("failed", "expired"):
            log.warning("job.finished", reason=record.get("message"), **fields)
        else:
            log.info("job.finished", **fields)
        return outcome

    def _end(
        self,
        a: _Attempt,
        outcome: str,
        status_code: int | None,
        message: str,
        error: errors.SendCloudError | None = None,
        *,
        acks: bool = True,
    ) -> str | None:
        end = Ending(a.job.kind(a.payload), outcome, status_code, message, a.claim.attempts,
                     self.now(a))
        record = a.job.failure(a.payload, end, error)
        return self._write(a, outcome, record, acks=acks)

    def _needs_review(self, a: _Attempt, status_code: int | None, reason: str) -> str | None:
        return self._end(a, "needs_review", status_code, reason + "; not resent, check "
                         "SendCloud's console to see whether it went out")

    def _permanent(self, a: _Attempt, exc: errors.SendCloudError) -> str | None:
        # A request refused as invalid was refused every time: the identical earlier try
        # cannot have been accepted. Anything else after a possible acceptance needs a person:
        # "failed" would invite a resend of something SendCloud may already have sent.
        if (a.job.sends_sms and a.maybe_sent
                and not isinstance(exc, errors.InvalidRequestError)):
            return self._needs_review(a, exc.code, f"{_describe(exc)} after an attempt that "
                                      "may have been accepted")
        # Dramatiq dead-letters the message (its nack): the finish must leave it in place.
        self._end(a, "failed", exc.code, exc.message, exc, acks=False)
        raise PermanentJobFailure(exc.code, exc.message, type(exc).__name__) from exc

    # -- retries -----------------------------------------------------------------------------

    def _retry_or_fail(self, a: _Attempt, exc: BaseException, *, uncertain: bool) -> str | None:
        error = exc if isinstance(exc, errors.SendCloudError) else None
        code = error.code if error is not None else None
        attempts = a.claim.attempts
        if attempts >= self.settings.job_max_attempts:
            message = f"gave up after {attempts} attempts: {_describe(exc)}"
            # "failed" would tell the app to send again; if any attempt may have been accepted,
            # a person has to look first.
            if a.job.sends_sms and (uncertain or a.maybe_sent):
                return self._needs_review(a, code, message + "; an attempt got no reply and "
                                          "may have been accepted")
            return self._end(a, "failed", code, message, error)
        delay = policy.backoff(attempts, self.settings, self.jitter)
        return self._reschedule(a, delay, error=exc, uncertain=uncertain, minimum=0.0)

    def _quota(self, a: _Attempt, exc: errors.QuotaError) -> str | None:
        if self.pause.trip(status_code=exc.code, message=exc.message, now=self.now(a)):
            log.error("account.paused", account=self.settings.sms_user,
                      seconds=self.settings.pause_seconds, status_code=exc.code)
        wait = self.pause.remaining() or self.settings.pause_seconds
        return self._reschedule(a, wait + self.jitter(), error=exc, uncertain=a.no_reply,
                                minimum=wait, refund=not a.no_reply)

    def _reschedule(
        self,
        a: _Attempt,
        delay: float,
        *,
        error: BaseException | None,
        uncertain: bool,
        minimum: float,
        refund: bool = False,
    ) -> str | None:
        """Give the claim back and raise Retry, unless the wait itself ends the job."""
        now = self.now(a)
        code = error.code if isinstance(error, errors.SendCloudError) else None
        why = _describe(error) if error is not None else "sending is paused"
        if a.job.sends_sms:
            since = a.claim.uncertain_since
            if uncertain:
                since = a.started if since is None else min(since, a.started)
            left = window_left(since, now, self.settings.dedup_safety_margin)
            if left is not None and delay > left:
                if left <= 0 or left < minimum:
                    return self._needs_review(
                        a, code, f"an earlier attempt's outcome is unknown and the next attempt "
                        f"({why}) would fall outside SendCloud's 1-hour sendRequestId window")
                # Land well inside the window: a retry due exactly at its end arrives late.
                delay = left - min(60.0, left / 2)
        expires = a.job.expires_at(a.payload)
        if expires is not None and now + delay >= expires:
            if a.job.sends_sms and (uncertain or a.maybe_sent):
                # "expired" tells the app nothing went out; this one may have.
                return self._needs_review(a, code, f"the next attempt ({why}) would come after "
                                          "the code expires, and an attempt may have been "
                                          "accepted")
            return self._end(a, "expired", code,
                             f"the next attempt ({why}) would come after the code expires")
        park = self.settings.rabbitmq and delay > self.settings.park_after
        if not self.ledger.release(a.key, a.claim.token, self._given(), uncertain=uncertain,
                                   refund=refund, error=why, delay=delay, parked=park):
            raise ClaimLost(a.key)
        if park:
            # A delayed message would sit unacknowledged in this worker for the whole wait,
            # and RabbitMQ's consumer_timeout requeues what a consumer holds that long. The
            # record keeps the job and its due time; the reconciler sends a copy when due.
            log.info("job.parked", delay_s=round(delay, 3), reason=why, status_code=code,
                     uncertain=uncertain)
            return None
        log.info("job.retry", delay_s=round(delay, 3), reason=why, status_code=code,
                 uncertain=uncertain)
        raise dramatiq.Retry(delay=_ms(delay))
