"""Structured logging for workers: JSON or key=value lines, the job on every line, no secrets.

``configure_logging(settings)`` sends both structlog and the standard library (Dramatiq,
APScheduler) to one stream through the same processors, so every line, whoever wrote it, passes
the redaction step: values under secret-looking keys are masked, and the configured secret
values are masked wherever they appear inside a string, tracebacks included. structlog's own
lines are rendered and written straight to the handler's stream, under the handler's lock,
without a standard-library record: that path cost a job's ``job.finished`` line three times
as much CPU, and a call below the level costs nothing at all.

``bind_job(key=..., message_id=..., actor=...)`` binds the job to the current context (a
contextvar, so each worker thread has its own) for the duration of a ``with`` block.

Named ``logs`` rather than ``logging`` so nothing here can shadow the standard library module.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

import structlog
from dramatiq import Message
from dramatiq.broker import MessageProxy
from structlog.typing import EventDict, Processor, WrappedLogger

from worker.settings import Settings

MASK = "***"
#: Keys whose values are always masked, compared case-insensitively.
SECRET_KEYS = frozenset({"apikey", "smskey", "signature", "api_key", "sms_key"})
#: Libraries that would log request URLs or bodies at INFO/DEBUG.
QUIET_LOGGERS = ("httpx", "httpcore")

_HANDLER_MARK = "_sendcloud_jobs_handler"


def _is_secret_key(key: object) -> bool:
    return isinstance(key, str) and key.lower() in SECRET_KEYS


class Redactor:
    """A structlog processor masking secret keys and secret values, at any depth."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self.secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))
        #: Top-level keys seen so far: whether each is a secret one. A line's keys are a few
        #: dozen names the code writes, so this stays small; it is bounded all the same.
        self._secret_key: dict[str, bool] = {}

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        redacted: EventDict = {}
        for key, value in event_dict.items():
            secret = self._secret_key.get(key)
            if secret is None:
                secret = _is_secret_key(key)
                if len(self._secret_key) < 4096:
                    self._secret_key[key] = secret
            if secret:
                redacted[key] = MASK
            elif type(value) is str:  # the common case, without _value's other checks
                redacted[key] = self.scrub(value)
            else:
                redacted[key] = self._value(None, value)
        return redacted

    def _value(self, key: object, value: Any) -> Any:
        if _is_secret_key(key):
            return MASK
        if isinstance(value, str):
            return self.scrub(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, Mapping):
            return {k: self._value(k, v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._value(None, v) for v in value]
        # Anything else would be rendered through str()/repr(): scrub that text instead.
        return self.scrub(str(value))

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


def _utc_second(second: int) -> tuple[int, str]:
    return second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


_second = _utc_second(0)


def utc_timestamp(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """``timestamp``: UTC, ISO 8601 with microseconds (``2026-12-07T20:25:18.292147Z``), as
    structlog's ``TimeStamper(fmt="iso", utc=True)`` writes it, with the date and time of day
    formatted once a second rather than once a line."""
    global _second
    now = time.time()
    second = int(now)
    cached = _second  # one read: another thread may replace it meanwhile
    if cached[0] != second:
        cached = _second = _utc_second(second)
    event_dict["timestamp"] = f"{cached[1]}.{int((now - second) * 1_000_000):06d}Z"
    return event_dict


class _JSONRenderer:
    """structlog's ``JSONRenderer(ensure_ascii=False)`` with its encoder made once, not per line.
    It renders what :class:`Redactor` returns: strings, numbers, booleans, None, dicts and lists
    (``repr`` for anything else, as structlog's renderer does)."""

    def __init__(self) -> None:
        self._encode = json.JSONEncoder(ensure_ascii=False, default=repr).encode

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
        return self._encode(event_dict)


def _renderer(log_format: str) -> Processor:
    if log_format == "json":
        return _JSONRenderer()
    return structlog.processors.KeyValueRenderer(
        key_order=["timestamp", "level", "event"], drop_missing=True
    )


class MessageArgsFilter(logging.Filter):
    """Dramatiq logs whole messages ("Failed to process message send_code({... 'code': ...})"):
    a verification code and phone numbers. Keep only the actor and the message id."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(
            isinstance(a, Message | MessageProxy) for a in record.args
        ):
            record.args = tuple(
                f"{a.actor_name}({a.message_id})" if isinstance(a, Message | MessageProxy) else a
                for a in record.args
            )
        return True


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> None:
    """Set up structlog and the root logger; safe to call again (it replaces its own handler)."""
    level = logging.getLevelName(settings.log_level)
    if not isinstance(level, int):
        level = logging.INFO
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        utc_timestamp,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # After format_exc_info, so traceback text is scrubbed too.
            Redactor(settings.secrets),
            _renderer(settings.log_format),
        ],
    )
    target = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(target)
    handler.setFormatter(formatter)
    handler.addFilter(MessageArgsFilter())
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    # Our earlier handler, and any plain handler on the same stream (the `dramatiq` command's
    # basicConfig one writes to the same pipe): two handlers there would print each line twice,
    # once without redaction.
    replaced = [
        h for h in root.handlers
        if getattr(h, _HANDLER_MARK, False)
        or (type(h) is logging.StreamHandler and h.stream is target)
    ]
    for old in replaced:
        root.removeHandler(old)
        old.close()  # StreamHandler.close() leaves the stream itself open
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))

    structlog.configure(
        processors=[
            *shared,
            _Rendered(Redactor(settings.secrets), _renderer(settings.log_format), handler),
        ],
        logger_factory=_HandlerLoggerFactory(handler),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # Module-level loggers must follow a later reconfiguration (tests, the CLI).
        cache_logger_on_first_use=False,
    )


class _Rendered:
    """Redaction and rendering, the last processor: a line that cannot be rendered (a value
    the renderer refuses) is reported on stderr as the standard library's handlers report a
    failed line, and written with its event name only; it never fails the caller."""

    def __init__(self, redactor: Redactor, renderer: Processor,
                 handler: logging.StreamHandler[TextIO]) -> None:
        self.redactor = redactor
        self.renderer = renderer
        self.handler = handler

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> Any:
        try:
            return self.renderer(logger, method_name, self.redactor(logger, method_name,
                                                                    event_dict))
        except Exception:
            event = self.redactor.scrub(str(event_dict.get("event")))
            self.handler.handleError(logging.makeLogRecord({"msg": event}))
            kept = {k: event_dict[k] for k in ("timestamp", "level", "logger", "job_key")
                    if isinstance(event_dict.get(k), str)}
            return self.renderer(logger, method_name, {
                **kept, "event": event, "log_error": "a field could not be rendered"})


class _HandlerLogger:
    """Writes structlog's rendered lines to a logging handler's stream, under its lock (the
    lock the standard library's lines take, so lines from both never interleave)."""

    def __init__(self, handler: logging.StreamHandler[TextIO], name: str) -> None:
        self.handler = handler
        #: Read by ``add_logger_name``.
        self.name = name

    def msg(self, message: str) -> None:
        handler = self.handler
        try:
            with handler.lock:  # type: ignore[union-attr]  # created by Handler.__init__
                stream = handler.stream
                stream.write(message + "\n")
                stream.flush()
        except Exception:
            # As the standard library's handlers do: a line that cannot be written (a closed
            # stream, a full disk) is reported on stderr and never fails the job that logged it.
            handler.handleError(logging.makeLogRecord({"msg": message}))

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


class _HandlerLoggerFactory:
    def __init__(self, handler: logging.StreamHandler[TextIO]) -> None:
        self.handler = handler
        self._loggers: dict[str, _HandlerLogger] = {}

    def __call__(self, *args: Any) -> _HandlerLogger:
        name = str(args[0]) if args else ""
        logger = self._loggers.get(name)
        if logger is None:
            logger = self._loggers[name] = _HandlerLogger(self.handler, name)
        return logger


@contextmanager
def bind_job(
    *, key: str, message_id: str | None = None, actor: str | None = None, **extra: Any
) -> Iterator[None]:
    """Put the job's key (and message id, actor) on every log line inside the block."""
    fields: dict[str, Any] = {"job_key": key, **extra}
    if message_id is not None:
        fields["message_id"] = message_id
    if actor is not None:
        fields["actor"] = actor
    with structlog.contextvars.bound_contextvars(**fields):
        yield
