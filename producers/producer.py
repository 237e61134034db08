"""Validate, reserve an idempotency key, enqueue: what a web app calls to send through SendCloud.

A call validates everything first (nothing is reserved or enqueued on bad input), then reserves
the job's idempotency record (see :mod:`producers.idempotency`), then enqueues a Dramatiq message
by actor name. It returns the idempotency key; :meth:`Producer.get_result` reads the outcome.

A repeated call with the same key and payload enqueues again only while the record is still
``queued`` (the first attempt may have died before enqueueing; the worker runs one of the
copies). Once a worker has taken the job, a repeat returns the key without enqueueing.

Member calls of more than 1000 members are split into jobs of at most 1000, keyed
``<key>:part<i>`` (i from 0) with ``part``/``parts`` in the payload; the call returns the base
key, and each part's outcome is at ``get_result(f"{key}:part{i}")``.

This module uses only dramatiq and redis (and the stdlib), never the worker's packages, so a
web app need not install httpx or tenacity. It logs with the stdlib ``logging`` for the same
reason; keys and kinds only, never phone numbers or addresses.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal
from uuid import uuid4

import dramatiq
import redis as redis_py
from dramatiq.brokers.redis import RedisBroker

from producers import validation as v
from producers.brokers import (
    BROKER_NAMESPACE,
    broker_url_from_env,
    check_broker_url,
    rabbitmq_broker,
)
from producers.campaign import CampaignStart, run_campaign
from producers.contract import (
    ACTOR_QUEUES,
    DEFAULT_QUEUED_AFTER,
    MEMBERS_ACTOR,
    SEND_CODE_ACTOR,
    SEND_SMS_ACTOR,
    SEND_VOICE_CODE_ACTOR,
    CodeJob,
    Kind,
    MembersJob,
    SmsJob,
    VoiceCodeJob,
)
from producers.delivery import decode as decode_delivery
from producers.delivery import delivery_key
from producers.enqueue import RESERVE_AND_ENQUEUE_LUA, fast_path, reserve_and_enqueue
from producers.errors import ProducerValidationError
from producers.idempotency import (
    DEFAULT_TTL,
    IdempotencyStore,
    job_copy,
    payload_hash,
    record_key,
)
from producers.redis_client import redis_from_target, redis_target_from_env
from producers.results import job_status, shape_record
from producers.verification import (
    Channel,
    CheckResult,
    Verification,
    Verifier,
    VerifySettings,
)

log = logging.getLogger("sendcloud.producers")

DEFAULT_CODE_EXPIRY = 600

MembersOp = Literal["add", "update", "delete"]
_MEMBER_KINDS: dict[MembersOp, Kind] = {
    "add": "members_add",
    "update": "members_update",
    "delete": "members_delete",
}


def _seconds_from_env(name: str, default: int, minimum: int = 1) -> int:
    """The default producer honours the same variables, and limits, as the workers."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ProducerValidationError(
            name, f"must be a whole number of seconds, got {raw!r}"
        ) from None
    if value < minimum:
        raise ProducerValidationError(name, f"must be at least {minimum}, got {value}")
    return value


def new_key(kind: Kind) -> str:
    return f"{kind}-{uuid4().hex}"


def part_key(key: str, part: int) -> str:
    return f"{key}:part{part}"


class Producer:
    """Enqueues SendCloud jobs on ``broker``; by default the one ``broker_url`` names (default
    ``$SENDCLOUD_BROKER_URL``: a RabbitmqBroker with publisher confirms), else a RedisBroker
    on ``redis_url`` (:mod:`producers.brokers`).

    The idempotency store uses ``redis`` if given, else the broker's own client when the broker
    is a RedisBroker, else a client for ``redis_url`` (default ``$REDIS_URL``). Clients made
    here follow Redis Sentinel when ``$SENDCLOUD_REDIS_SENTINELS`` is set
    (:mod:`producers.redis_client`), and reservations wait for
    ``$SENDCLOUD_REDIS_WAIT_REPLICAS`` replicas (``wait_replicas`` overrides it): one not
    acknowledged in time raises :class:`~producers.replication.NotReplicated` and enqueues
    nothing.
    """

    def __init__(
        self,
        broker: dramatiq.Broker | None = None,
        *,
        redis: redis_py.Redis | None = None,
        redis_url: str | None = None,
        broker_url: str | None = None,
        idempotency_ttl: int = DEFAULT_TTL,
        code_expiry: float = DEFAULT_CODE_EXPIRY,
        wait_replicas: int | None = None,
    ) -> None:
        self.idempotency_ttl = v.validate_positive_int(idempotency_ttl, "idempotency_ttl")
        self.code_expiry = v.validate_expiry(code_expiry, "code_expiry")
        target = redis_target_from_env(redis_url)
        self._owned: list[Any] = []
        if broker is None:
            amqp = broker_url_from_env() if broker_url is None else check_broker_url(broker_url)
            broker = rabbitmq_broker(amqp) if amqp else RedisBroker(
                client=redis_from_target(target), namespace=BROKER_NAMESPACE)
            self._owned.append(broker)
        self.broker = broker
        if redis is None:
            if isinstance(broker, RedisBroker):
                redis = broker.client
            else:
                redis = redis_from_target(target)
                self._owned.append(redis)
        self.redis = redis
        # The reconciler looks at a job still queued this long after its reservation: the
        # deployment's SENDCLOUD_RECONCILE_QUEUED_AFTER, the same for producers and reconciler.
        self.store = IdempotencyStore(
            redis,
            queued_after=_seconds_from_env("SENDCLOUD_RECONCILE_QUEUED_AFTER",
                                           DEFAULT_QUEUED_AFTER),
            wait_replicas=target.wait_replicas if wait_replicas is None else wait_replicas,
            wait_timeout_ms=target.wait_timeout_ms,
        )
        self._verifier: Verifier | None = None
        self._enqueue_script: Any = None
        # StubBroker refuses undeclared queues; declaring is local bookkeeping, no I/O.
        for queue_name in {ACTOR_QUEUES[actor] for actor in _ACTORS}:
            broker.declare_queue(queue_name)

    def close(self) -> None:
        """Close the broker and Redis client this producer created (not ones passed in)."""
        for resource in self._owned:
            resource.close()
        self._owned.clear()

    # -- SMS -------------------------------------------------------------------------------

    def send_sms(
        self,
        template_id: int,
        phones: Sequence[str],
        vars: Mapping[str, str | int] | None = None,
        *,
        msg_type: int = 0,
        tag: Mapping[str, str | int] | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Send template ``template_id`` to up to 2000 mainland numbers (msg_type 0 SMS, 1 MMS)."""
        payload: SmsJob = {
            "key": "",
            "template_id": v.validate_positive_int(template_id, "template_id"),
            "phones": v.validate_phones(phones, "phones"),
            "vars": v.validate_sms_vars(vars, "vars"),
            "msg_type": v.validate_choice(msg_type, "msg_type", (0, 1)),
            "tag": v.validate_tag(tag, "tag"),
            "enqueued_at": 0.0,
        }
        return self._submit("sms", SEND_SMS_ACTOR, idempotency_key, [dict(payload)])

    def send_code(
        self,
        phone: str,
        code: str,
        *,
        sign_id: int | None = None,
        sign_name: str | None = None,
        msg_type: int = 0,
        expires_in: float | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Send a verification code (msg_type 0: mainland, 2: international ``+<digits>``).

        SendCloud uses ``sign_id`` when both are given, so ``sign_name`` is then dropped.
        The worker never sends the code after ``expires_in`` seconds (default ``code_expiry``).
        """
        msg_type = v.validate_choice(msg_type, "msg_type", (0, 2))
        phone = v.validate_phone(phone, "phone", international=msg_type == 2)
        code = v.validate_code(code, "code")
        if sign_id is not None:
            sign_id = v.validate_positive_int(sign_id, "sign_id")
            sign_name = None
        elif sign_name is not None:
            if not isinstance(sign_name, str) or not sign_name.strip():
                raise v.fail("sign_name", "must be a non-empty string", sign_name)
        else:
            raise v.fail("sign_id", "sign_id or sign_name is required")
        payload: CodeJob = {
            "key": "",
            "phone": phone,
            "code": code,
            "sign_id": sign_id,
            "sign_name": sign_name,
            "msg_type": msg_type,
            "enqueued_at": 0.0,
            "expires_at": 0.0,
            "expires_in": self._expires_in(expires_in),
        }
        return self._submit("code", SEND_CODE_ACTOR, idempotency_key, [dict(payload)])

    def send_voice_code(
        self,
        phone: str,
        code: str,
        *,
        expires_in: float | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Read a 4-6 digit code to a mainland number by voice call."""
        payload: VoiceCodeJob = {
            "key": "",
            "phone": v.validate_phone(phone, "phone"),
            "code": v.validate_code(code, "code"),
            "enqueued_at": 0.0,
            "expires_at": 0.0,
            "expires_in": self._expires_in(expires_in),
        }
        return self._submit("voice_code", SEND_VOICE_CODE_ACTOR, idempotency_key, [dict(payload)])

    # -- address-list members --------------------------------------------------------------

    def add_members(
        self,
        address: str,
        members: Sequence[str],
        *,
        names: Sequence[str] | None = None,
        vars: Sequence[Mapping[str, str | int]] | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Add (or overwrite) members of list ``address``.

        More than 1000 members (as for update and delete) become jobs of at most 1000 keyed
        ``<key>:part<i>``; the return value is still the base key.
        """
        return self._members("add", address, members, None, names, vars, idempotency_key)

    def update_members(
        self,
        address: str,
        members: Sequence[str],
        *,
        new_members: Sequence[str] | None = None,
        names: Sequence[str] | None = None,
        vars: Sequence[Mapping[str, str | int]] | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Change existing members; ``new_members[i]`` renames ``members[i]``."""
        return self._members("update", address, members, new_members, names, vars, idempotency_key)

    def delete_members(
        self, address: str, members: Sequence[str], *, idempotency_key: str | None = None
    ) -> str:
        return self._members("delete", address, members, None, None, None, idempotency_key)

    def _members(
        self,
        op: MembersOp,
        address: str,
        members: Sequence[str],
        new_members: Sequence[str] | None,
        names: Sequence[str] | None,
        vars: Sequence[Mapping[str, str | int]] | None,
        idempotency_key: str | None,
    ) -> str:
        address = v.validate_address(address, "address")
        members_list = v.validate_emails(members, "members")
        count = len(members_list)
        new_list = None
        if new_members is not None:
            new_list = v.validate_emails(new_members, "new_members")
            if len(new_list) != count:
                rule = f"must hold one entry per member ({count}), got {len(new_list)}"
                raise v.fail("new_members", rule)
        names_list = v.validate_member_names(names, count, "names")
        vars_list = v.validate_member_vars(vars, count, "vars")

        size = v.MAX_MEMBERS_PER_REQUEST
        parts = (count + size - 1) // size
        payloads: list[dict[str, Any]] = []
        for part, start in enumerate(range(0, count, size)):
            chunk = slice(start, start + size)
            job: MembersJob = {
                "key": "",
                "op": op,
                "address": address,
                "members": members_list[chunk],
                "new_members": None if new_list is None else new_list[chunk],
                "names": None if names_list is None else names_list[chunk],
                "vars": None if vars_list is None else vars_list[chunk],
                "enqueued_at": 0.0,
            }
            if parts > 1:
                job["part"] = part
                job["parts"] = parts
            payloads.append(dict(job))
        return self._submit(_MEMBER_KINDS[op], MEMBERS_ACTOR, idempotency_key, payloads)

    # -- campaigns -------------------------------------------------------------------------

    def start_campaign(
        self,
        campaign_id: str,
        template_id: int,
        phones: Iterable[Any],
        vars: dict[str, str] | None = None,
        *,
        msg_type: int = 0,
        tag: dict[str, str] | None = None,
        retention: int | None = None,
    ) -> CampaignStart:
        """Send ``template_id`` to every valid number of ``phones``: see producers.campaign."""
        return run_campaign(
            self, campaign_id, template_id, phones, vars, msg_type=msg_type, tag=tag,
            retention=retention,
        )

    # -- verifications (producers.verification) --------------------------------------------

    def verifier(self, settings: VerifySettings | None = None) -> Verifier:
        """This producer's :class:`Verifier`; ``settings`` (default: from the environment)
        replace the ones it had."""
        if self._verifier is None or settings is not None:
            self._verifier = Verifier(self, settings)
        return self._verifier

    def start_verification(
        self,
        phone: str,
        *,
        channel: Channel = "sms",
        client_id: str | None = None,
        sign_id: int | None = None,
        sign_name: str | None = None,
        length: int = 6,
        ttl: int | None = None,
    ) -> Verification:
        """Send a verification code to ``phone``, generated here and never shown to anyone but
        its recipient. Within the code's life a second start sends the same code again (by
        voice with ``channel="voice"``). Raises ``VerificationRefused`` when a guardrail says
        no, before anything is enqueued."""
        return self.verifier().start(
            phone, channel=channel, client_id=client_id, sign_id=sign_id, sign_name=sign_name,
            length=length, ttl=ttl,
        )  # fmt: skip

    def check_verification(
        self, phone: str, code: str, *, verification_id: str | None = None
    ) -> CheckResult:
        """``approved`` once, for the right code within its life and attempts; else
        ``wrong_code`` (with attempts left), ``expired``, ``too_many_attempts`` or
        ``not_found`` (none, cancelled, or already approved)."""
        return self.verifier().check(phone, code, verification_id=verification_id)

    def cancel_verification(self, phone: str, *, verification_id: str | None = None) -> bool:
        """Stop ``phone``'s pending verification; True when there was one."""
        return self.verifier().cancel(phone, verification_id=verification_id)

    # -- results ---------------------------------------------------------------------------

    def get_result(self, key: str) -> dict[str, Any] | None:
        """The worker's final record for ``key`` (a job or a ``<key>:part<i>``), else None.

        The same dict, field for field and type for type, as that job's entry read from its
        result stream with :class:`~producers.ResultReader`: fields and types in
        :mod:`producers.results`.

        Once a delivery receipt came for an SMS or code job, each of its accepted recipients
        also carries ``delivery`` (pending, delivered, undelivered or rejected) and
        ``delivery_code`` (the receipt's statusCode, None unless failed): see
        :mod:`producers.delivery`. A campaign chunk's are read with the campaign report.
        """
        lookup = _lookup_key(key)
        result = self.store.get_result(lookup)
        if not isinstance(result, dict):
            return None
        record = shape_record(result)
        listed = record.get("recipients")
        if isinstance(listed, list) and listed:
            raw = self.redis.get(delivery_key(lookup))
            if raw is not None:
                states = decode_delivery(raw, len(listed))  # type: ignore[arg-type]
                for recipient, state in zip(listed, states, strict=True):
                    if isinstance(recipient, dict) and recipient.get("sms_id"):
                        recipient["delivery"] = state.state
                        recipient["delivery_code"] = state.status_code
        return record

    def get_record(self, key: str) -> dict[str, Any] | None:
        """What is known about job ``key``: state, attempts, times and its final record (the
        fields of :data:`producers.results.JOB_STATUS_FIELDS`, what ``sendcloud-jobs results
        get`` prints), else None. The record's internal bookkeeping is left out."""
        lookup = _lookup_key(key)
        return job_status(lookup, self.redis.hgetall(record_key(lookup)))

    # -- internals -------------------------------------------------------------------------

    def _expires_in(self, expires_in: float | None) -> float:
        return self.code_expiry if expires_in is None else v.validate_expiry(expires_in)

    def _submit(
        self,
        kind: Kind,
        actor: str,
        idempotency_key: str | None,
        payloads: list[dict[str, Any]],
    ) -> str:
        """Reserve every payload's key in one step, then enqueue those that still need it."""
        key = new_key(kind) if idempotency_key is None else v.validate_key(idempotency_key)
        queue_name = ACTOR_QUEUES[actor]
        if len(payloads) == 1 and fast_path(self.broker) and not self.store.wait_replicas:
            # One round trip: producers.enqueue. (Not when the reservation must be replicated
            # before its message may run: that script writes both at once.)
            assert isinstance(self.broker, RedisBroker)
            if self._enqueue_script is None:
                self._enqueue_script = self.redis.register_script(RESERVE_AND_ENQUEUE_LUA)
            payloads[0]["key"] = key
            reserve_and_enqueue(
                self.broker, self._enqueue_script, queue_name=queue_name, actor_name=actor,
                payload=payloads[0], kind=kind, ttl=self.idempotency_ttl,
                queued_after=self.store.queued_after,
            )  # fmt: skip
            return key
        split = len(payloads) > 1
        messages: list[dramatiq.Message[Any]] = []
        for index, payload in enumerate(payloads):
            payload["key"] = part_key(key, index) if split else key
            messages.append(dramatiq.Message(
                queue_name=queue_name, actor_name=actor, args=(payload,), kwargs={}, options={},
            ))
        reservations = self.store.reserve_many(
            [(payload["key"], payload_hash(payload)) for payload in payloads],
            kind,
            self.idempotency_ttl,
            jobs=[job_copy(message) for message in messages],
        )
        for payload, message, reservation in zip(payloads, messages, reservations, strict=True):
            if not reservation.should_enqueue:
                log.debug("job %s is %s; not enqueued again", payload["key"], reservation.state)
                continue
            stamp_times(payload, reservation.now)
            self.broker.enqueue(message)
            log.debug("enqueued %s job %s on %s", kind, payload["key"], queue_name)
        return key


def stamp_times(payload: dict[str, Any], now: float) -> dict[str, Any]:
    """Date a payload by Redis's clock: ``enqueued_at`` and, for codes, ``expires_at``.

    The times come from the reservation's script, never from this host's clock, so that a
    producer whose clock is off cannot stretch or shorten a code's life.
    """
    payload["enqueued_at"] = now
    if "expires_in" in payload:
        payload["expires_at"] = now + float(payload["expires_in"])
    return payload


def _lookup_key(key: object) -> str:
    # Looser than validate_key: a part key may be up to ":part<i>" longer than a caller's key.
    if not isinstance(key, str) or not key:
        raise v.fail("key", "must be a non-empty string", key)
    return key


_ACTORS = (SEND_SMS_ACTOR, SEND_CODE_ACTOR, SEND_VOICE_CODE_ACTOR, MEMBERS_ACTOR)

_default: Producer | None = None
_default_lock = threading.Lock()


def default_producer() -> Producer:
    """The producer behind the module-level functions, created on first use from $REDIS_URL
    (and $SENDCLOUD_BROKER_URL, when the queues live in RabbitMQ; the Sentinel settings of
    :mod:`producers.redis_client`, when Redis fails over)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Producer(
                    idempotency_ttl=_seconds_from_env(
                        "SENDCLOUD_IDEMPOTENCY_TTL", DEFAULT_TTL, minimum=3600
                    ),
                    code_expiry=_seconds_from_env("SENDCLOUD_CODE_EXPIRY", DEFAULT_CODE_EXPIRY),
                )
    return _default


def set_default_producer(producer: Producer | None) -> Producer | None:
    """Replace the default producer (None: create a fresh one on next use); returns the old one."""
    global _default
    with _default_lock:
        previous, _default = _default, producer
    return previous


def start_campaign(
    campaign_id: str,
    template_id: int,
    phones: Iterable[Any],
    vars: dict[str, str] | None = None,
    *,
    msg_type: int = 0,
    tag: dict[str, str] | None = None,
    retention: int | None = None,
    producer: Producer | None = None,
) -> CampaignStart:
    """:meth:`Producer.start_campaign` on ``producer``, by default :func:`default_producer`."""
    return (producer or default_producer()).start_campaign(
        campaign_id, template_id, phones, vars, msg_type=msg_type, tag=tag, retention=retention
    )
