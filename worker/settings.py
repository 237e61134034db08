"""Every setting the service reads, read from the environment in this one place.

Credentials are only required where they are used: ``Settings.from_env()`` never fails, and
``require_credentials()`` is called by worker start-up (and by commands that call SendCloud),
so a web app that only enqueues never needs the SendCloud keys.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from producers.errors import SettingError
from producers.redis_client import (
    DEFAULT_REDIS_URL,
    DEFAULT_WAIT_TIMEOUT_MS,
    RedisTarget,
    parse_redis_target,
)

DEFAULT_BASE_URL = "https://api.sendcloud.net"
SIGN_METHODS = ("md5", "sha256")


class ConfigurationError(Exception):
    """A required setting is missing or malformed. Never retried."""

    def __init__(self, variable: str, rule: str) -> None:
        self.variable = variable
        self.rule = rule
        super().__init__(f"{variable}: {rule}")


CREDENTIAL_VARIABLES = (
    "SENDCLOUD_SMS_USER",
    "SENDCLOUD_SMS_KEY",
    "SENDCLOUD_API_USER",
    "SENDCLOUD_API_KEY",
)


NAMESPACE_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,32}")


def _namespace(env: Mapping[str, str]) -> str:
    raw = env.get("SENDCLOUD_REQUEST_ID_NAMESPACE", "").strip()
    if raw and not NAMESPACE_PATTERN.fullmatch(raw):
        raise ConfigurationError(
            "SENDCLOUD_REQUEST_ID_NAMESPACE", "must be 1 to 32 letters, digits, '_', '.' or '-'"
        )
    return raw


BROKER_SCHEMES = ("amqp://", "amqps://")
WEB_SECRET_MIN = 32
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _redis_target(env: Mapping[str, str]) -> RedisTarget:
    """REDIS_URL and the Sentinel settings, by the parser producers use (one set of rules)."""
    try:
        return parse_redis_target(env)
    except SettingError as exc:
        raise ConfigurationError(exc.variable, exc.rule) from None


def _broker_url(env: Mapping[str, str]) -> str:
    """Empty: the queues live in Redis. An AMQP URL (several joined by ';', one per cluster
    node): they live in RabbitMQ, and Redis keeps everything else."""
    url = (env.get("SENDCLOUD_BROKER_URL") or "").strip()
    if url and not all(part.strip().startswith(BROKER_SCHEMES) for part in url.split(";")):
        raise ConfigurationError(
            "SENDCLOUD_BROKER_URL",
            f"must start with {', '.join(BROKER_SCHEMES)} (e.g. amqp://user:pass@host:5672/vhost)"
            ", or be empty to keep the queues in Redis",
        )
    return url


def _log_level(env: Mapping[str, str]) -> str:
    level = (env.get("LOG_LEVEL") or "INFO").strip().upper()
    if level not in LOG_LEVELS:
        raise ConfigurationError("LOG_LEVEL", f"must be one of {', '.join(LOG_LEVELS)}")
    return level


def _float(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(name, f"must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(name, f"must be at least {minimum}, got {value}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(name, f"must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(name, f"must be at least {minimum}, got {value}")
    return value


def _hook_key(env: Mapping[str, str], name: str) -> str:
    key = env.get(name, "").strip()
    if any(c.isspace() or not c.isprintable() for c in key):
        raise ConfigurationError(name, "must be the app key from SendCloud's console, one word")
    return key


def _poll_status(env: Mapping[str, str]) -> int | None:
    raw = env.get("SENDCLOUD_POLL_STATUS", "").strip()
    if not raw:
        return None
    if raw not in ("1", "4", "5", "18"):
        raise ConfigurationError("SENDCLOUD_POLL_STATUS", f"must be 1, 4, 5 or 18, got {raw!r}")
    return int(raw)


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip()
    if raw not in ("", "0", "1"):
        raise ConfigurationError(name, f"must be 1 (on) or 0 (off), got {raw!r}")
    return raw == "1"


@dataclass(frozen=True)
class Settings:
    base_url: str = DEFAULT_BASE_URL
    sms_user: str = ""
    sms_key: str = field(default="", repr=False)
    api_user: str = ""
    api_key: str = field(default="", repr=False)
    sign_method: str = "md5"
    redis_url: str = field(default=DEFAULT_REDIS_URL, repr=False)  # may hold a password
    #: Redis Sentinel (producers.redis_client): the sentinels' (host, port) pairs, the master's
    #: name and the sentinels' password; none: REDIS_URL's host is the one Redis.
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_master: str = ""
    redis_sentinel_password: str = field(default="", repr=False)
    #: Replicas that must acknowledge a claim or finish (WAIT), and how long to wait (ms).
    redis_wait_replicas: int = 0
    redis_wait_timeout_ms: int = DEFAULT_WAIT_TIMEOUT_MS
    #: Where the queues live: "" for Redis (REDIS_URL), or RabbitMQ's amqp:// URL.
    broker_url: str = field(default="", repr=False)  # may carry RabbitMQ's password
    #: RabbitMQ: a retry or deferral longer than this (s) is parked in Redis, not held as a
    #: delayed message in a worker's memory (worker.jobs.runner).
    park_after: float = 300.0
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    #: What a 498 (daily limit per phone) does: "defer" to the next day or "fail" at once.
    daily_limit_action: str = "defer"
    #: How long idempotency keys (and their stored results) live, in seconds.
    idempotency_ttl: int = 24 * 3600
    #: Default lifetime of a verification code, in seconds.
    code_expiry: int = 600
    #: Approximate cap of each result stream (XADD MAXLEN ~).
    results_maxlen: int = 100_000
    #: Minutes between emailStatus polls.
    poll_interval_minutes: float = 10.0
    #: emailStatus calls allowed per minute across all workers (SendCloud allows 3000).
    poll_rate_per_minute: int = 2500
    #: emailStatus polls re-read this much before the last successful poll (minutes).
    poll_overlap_minutes: float = 15.0
    #: Every poll re-reads at least this many request dates, today included, for late changes.
    poll_settle_days: int = 3
    #: emailStatus filters (apiUserList, labelId, status); empty means no filter.
    poll_api_users: tuple[str, ...] = ()
    poll_label_id: str | None = None
    poll_status: int | None = None
    #: Port of the Prometheus exporter in worker processes (0 turns it off).
    metrics_port: int = 9191
    #: "json" for production, "console" for key=value development logs.
    log_format: str = "console"
    log_level: str = "INFO"
    #: Job attempts (each a short tenacity-retried call) before a job ends as "failed".
    job_max_attempts: int = 8
    #: Dramatiq retry backoff between job attempts: base * 2**(n-1), jittered, capped (s).
    retry_base_delay: float = 5.0
    retry_max_delay: float = 600.0
    #: Short in-call retries of transient errors (tenacity): attempts and delays (s).
    call_attempts: int = 3
    call_base_delay: float = 0.2
    call_max_delay: float = 2.0
    #: How long a worker's claim on a job lasts before another copy may take it over (s).
    job_lease: float = 120.0
    #: Safety margin under SendCloud's 1-hour sendRequestId dedup window (the 1-hour rule, s).
    dedup_safety_margin: float = 300.0
    #: How long a 499 (insufficient balance) pauses SMS sending for the account (s).
    pause_seconds: float = 300.0
    #: RedisBroker: a worker silent this long is dead and its messages are redelivered (s).
    broker_heartbeat_timeout: float = 60.0
    #: RedisBroker: chance per million Redis commands of running queue maintenance.
    broker_maintenance_chance: int = 1000
    #: The reconciler: seconds between its passes, and how long past its due time a job
    #: waits before it is driven again (worker.jobs.reconciler).
    reconcile_interval: float = 15.0
    reconcile_grace: float = 15.0
    #: How long a job still waiting in its queue is left before the reconciler looks again (s).
    reconcile_queued_after: float = 600.0
    #: Prefix of every sendRequestId: keeps deployments sharing one SendCloud account apart.
    #: Empty: the deployment's own, made once and kept in its Redis (worker.jobs.idempotency).
    request_id_namespace: str = ""
    #: Result stream entries older than this (seconds) are trimmed as new ones are added.
    results_max_age: int = 30 * 86400
    #: How long after its send a delivery receipt is still matched to its job (s): the smsId
    #: index (producers.sms_index) keeps each day's entries this long.
    receipt_window: int = 3 * 86400
    #: How long a receipt whose smsId no job has claimed yet waits before it is recorded
    #: unmatched (s), and how often such receipts are tried again (s).
    receipt_match_wait: int = 900
    receipt_retry: float = 10.0
    #: Opens the sealed codes of verifications (producers.verification); the producers' own.
    verify_secret: str = field(default="", repr=False)
    #: The webhook receiver (worker.web): the app keys SendCloud signs SMSHook and mail
    #: WebHook posts with; a hook path whose key is empty answers 404.
    sms_hook_key: str = field(default="", repr=False)
    mail_hook_key: str = field(default="", repr=False)
    #: Largest hook body read, in bytes; a longer one is refused (413) while it streams in.
    hook_max_bytes: int = 1 << 20  # a 2000-number `request` event, form-encoded, is ~350 KB
    #: A hook's timestamp must be within this many seconds of Redis's clock, either way.
    hook_window: int = 3600
    #: The operator's dashboard (worker.web.dashboard): the key its session cookies are signed
    #: with, whether the cookie is sent over HTTPS only, whether phone numbers are masked.
    web_secret: str = field(default="", repr=False)
    web_tls: bool = False
    web_mask_phones: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        sign_method = env.get("SENDCLOUD_SIGN_METHOD", "md5").strip().lower() or "md5"
        if sign_method not in SIGN_METHODS:
            raise ConfigurationError(
                "SENDCLOUD_SIGN_METHOD", f"must be one of {', '.join(SIGN_METHODS)}"
            )
        daily = env.get("SENDCLOUD_DAILY_LIMIT_ACTION", "defer").strip().lower() or "defer"
        if daily not in ("defer", "fail"):
            raise ConfigurationError("SENDCLOUD_DAILY_LIMIT_ACTION", "must be defer or fail")
        log_format = env.get("LOG_FORMAT", "console").strip().lower() or "console"
        if log_format not in ("json", "console"):
            raise ConfigurationError("LOG_FORMAT", "must be json or console")
        margin = _float(env, "SENDCLOUD_DEDUP_SAFETY_MARGIN", 300.0)
        if margin >= 3600:
            raise ConfigurationError(
                "SENDCLOUD_DEDUP_SAFETY_MARGIN", "must be under 3600 (SendCloud's dedup window)"
            )
        target = _redis_target(env)
        return cls(
            base_url=(env.get("SENDCLOUD_BASE_URL") or DEFAULT_BASE_URL).rstrip("/"),
            sms_user=env.get("SENDCLOUD_SMS_USER", ""),
            sms_key=env.get("SENDCLOUD_SMS_KEY", ""),
            api_user=env.get("SENDCLOUD_API_USER", ""),
            api_key=env.get("SENDCLOUD_API_KEY", ""),
            sign_method=sign_method,
            redis_url=target.url,
            redis_sentinels=target.sentinels,
            redis_master=target.master,
            redis_sentinel_password=target.sentinel_password,
            redis_wait_replicas=target.wait_replicas,
            redis_wait_timeout_ms=target.wait_timeout_ms,
            broker_url=_broker_url(env),
            park_after=_float(env, "SENDCLOUD_PARK_AFTER", 300.0, minimum=1.0),
            connect_timeout=_float(env, "SENDCLOUD_CONNECT_TIMEOUT", 5.0, minimum=0.001),
            read_timeout=_float(env, "SENDCLOUD_READ_TIMEOUT", 15.0, minimum=0.001),
            daily_limit_action=daily,
            idempotency_ttl=_int(env, "SENDCLOUD_IDEMPOTENCY_TTL", 24 * 3600, minimum=3600),
            code_expiry=_int(env, "SENDCLOUD_CODE_EXPIRY", 600, minimum=1),
            results_maxlen=_int(env, "SENDCLOUD_RESULTS_MAXLEN", 100_000, minimum=100),
            results_max_age=_int(env, "SENDCLOUD_RESULTS_MAX_AGE", 30 * 86400, minimum=0),
            receipt_window=_int(env, "SENDCLOUD_RECEIPT_WINDOW", 3 * 86400, minimum=3600),
            receipt_match_wait=_int(env, "SENDCLOUD_RECEIPT_MATCH_WAIT", 900, minimum=0),
            receipt_retry=_float(env, "SENDCLOUD_RECEIPT_RETRY", 10.0, minimum=0.1),
            poll_interval_minutes=_float(env, "SENDCLOUD_POLL_INTERVAL_MINUTES", 10.0, minimum=0.1),
            poll_rate_per_minute=_int(env, "SENDCLOUD_POLL_RATE_PER_MINUTE", 2500, minimum=1),
            poll_overlap_minutes=_float(env, "SENDCLOUD_POLL_OVERLAP_MINUTES", 15.0),
            poll_settle_days=_int(env, "SENDCLOUD_POLL_SETTLE_DAYS", 3, minimum=1),
            poll_api_users=tuple(
                u.strip() for u in env.get("SENDCLOUD_POLL_API_USERS", "").split(";") if u.strip()
            ),
            poll_label_id=env.get("SENDCLOUD_POLL_LABEL_ID", "").strip() or None,
            poll_status=_poll_status(env),
            metrics_port=_int(env, "SENDCLOUD_METRICS_PORT", 9191),
            log_format=log_format,
            log_level=_log_level(env),
            job_max_attempts=_int(env, "SENDCLOUD_JOB_MAX_ATTEMPTS", 8, minimum=1),
            retry_base_delay=_float(env, "SENDCLOUD_RETRY_BASE_DELAY", 5.0, minimum=0.001),
            retry_max_delay=_float(env, "SENDCLOUD_RETRY_MAX_DELAY", 600.0, minimum=0.001),
            call_attempts=_int(env, "SENDCLOUD_CALL_ATTEMPTS", 3, minimum=1),
            call_base_delay=_float(env, "SENDCLOUD_CALL_BASE_DELAY", 0.2),
            call_max_delay=_float(env, "SENDCLOUD_CALL_MAX_DELAY", 2.0),
            job_lease=_float(env, "SENDCLOUD_JOB_LEASE", 120.0, minimum=1.0),
            dedup_safety_margin=margin,
            pause_seconds=_float(env, "SENDCLOUD_PAUSE_SECONDS", 300.0, minimum=1.0),
            broker_heartbeat_timeout=_float(
                env, "SENDCLOUD_BROKER_HEARTBEAT_TIMEOUT", 60.0, minimum=0.5
            ),
            broker_maintenance_chance=_int(
                env, "SENDCLOUD_BROKER_MAINTENANCE_CHANCE", 1000, minimum=1
            ),
            reconcile_interval=_float(env, "SENDCLOUD_RECONCILE_INTERVAL", 15.0, minimum=0.1),
            reconcile_grace=_float(env, "SENDCLOUD_RECONCILE_GRACE", 15.0),
            reconcile_queued_after=_float(
                env, "SENDCLOUD_RECONCILE_QUEUED_AFTER", 600.0, minimum=1.0
            ),
            request_id_namespace=_namespace(env),
            verify_secret=env.get("SENDCLOUD_VERIFY_SECRET", "").strip(),
            sms_hook_key=_hook_key(env, "SENDCLOUD_SMS_HOOK_KEY"),
            mail_hook_key=_hook_key(env, "SENDCLOUD_MAIL_HOOK_KEY"),
            hook_max_bytes=_int(env, "SENDCLOUD_HOOK_MAX_BYTES", 1 << 20, minimum=1024),
            hook_window=_int(env, "SENDCLOUD_HOOK_WINDOW", 3600, minimum=1),
            web_secret=env.get("SENDCLOUD_WEB_SECRET", "").strip(),
            web_tls=_flag(env, "SENDCLOUD_WEB_TLS"),
            web_mask_phones=_flag(env, "SENDCLOUD_WEB_MASK_PHONES"),
        )

    @property
    def redis_target(self) -> RedisTarget:
        """Where Redis is (its URL, or its sentinels) and what decisive writes wait for."""
        return RedisTarget(self.redis_url, self.redis_sentinels, self.redis_master,
                           self.redis_sentinel_password, self.redis_wait_replicas,
                           self.redis_wait_timeout_ms)

    @property
    def rabbitmq(self) -> bool:
        """The queues live in RabbitMQ."""
        return bool(self.broker_url)

    def require_credentials(self) -> Settings:
        """Fail with the name of the first missing credential variable."""
        values = {
            "SENDCLOUD_SMS_USER": self.sms_user,
            "SENDCLOUD_SMS_KEY": self.sms_key,
            "SENDCLOUD_API_USER": self.api_user,
            "SENDCLOUD_API_KEY": self.api_key,
        }
        for name in CREDENTIAL_VARIABLES:
            if not values[name].strip():
                raise ConfigurationError(name, "is required but not set")
        return self

    def require_hook_key(self) -> Settings:
        """The receiver needs at least one hook key, and neither may be an API credential
        (the app key is a value of its own in SendCloud's console: every hook would be refused)."""
        if not (self.sms_hook_key or self.mail_hook_key):
            raise ConfigurationError(
                "SENDCLOUD_SMS_HOOK_KEY",
                "is required but not set (or SENDCLOUD_MAIL_HOOK_KEY): the app key of SMSHook "
                "or of the mail WebHook",
            )
        for name, key in (("SENDCLOUD_SMS_HOOK_KEY", self.sms_hook_key),
                          ("SENDCLOUD_MAIL_HOOK_KEY", self.mail_hook_key)):
            if key and key in (self.sms_key, self.api_key):
                raise ConfigurationError(
                    name, "is the smsKey or apiKey; the hook's app key is another value"
                )
        return self

    def require_web_secret(self) -> Settings:
        """The dashboard signs its session cookies with this: a short key could be guessed."""
        if len(self.web_secret) < WEB_SECRET_MIN:
            raise ConfigurationError(
                "SENDCLOUD_WEB_SECRET",
                f"must be at least {WEB_SECRET_MIN} characters (it signs the dashboard's session "
                "cookies); make one with: python3 -c 'import secrets; "
                "print(secrets.token_hex(32))'",
            )
        return self

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values that must never be logged, stored or raised."""
        password = urlsplit(self.broker_url.split(";")[0]).password if self.broker_url else None
        redis_password = urlsplit(self.redis_url).password if self.redis_url else None
        values = (self.sms_key, self.api_key, self.verify_secret, self.sms_hook_key,
                  self.mail_hook_key, self.web_secret, password, redis_password,
                  self.redis_sentinel_password)
        return tuple(s for s in values if s)
