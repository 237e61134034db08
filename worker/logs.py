"""Structured logging for workers: JSON or key=value lines, the job on every line, no secrets.

``configure_logging(settings)`` routes both structlog and the standard library (Dramatiq,
APScheduler) through one processor chain, so every line, whoever wrote it, passes the redaction
step: values under secret-looking keys are masked, and the configured secret values are masked
wherever they appear inside a string, tracebacks included.

``bind_job(key=..., message_id=..., actor=...)`` binds the job to the current context (a
contextvar, so each worker thread has its own) for the duration of a ``with`` block.

``direct_logger(settings, name)``: for a line per request on a hot path (the webhook receiver),
the same fields, redaction and renderer written straight to the configured stream, without the
standard library's records and handler (a third of the CPU per line).

Named ``logs`` rather than ``logging`` so nothing here can shadow the standard library module.
"""

from __future__ import annotations

import logging
import sys
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


class Redactor:
    """A structlog processor masking secret keys and secret values, at any depth."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self.secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        return {key: self._value(key, value) for key, value in event_dict.items()}

    def _value(self, key: object, value: Any) -> Any:
        if isinstance(key, str) and key.lower() in SECRET_KEYS:
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


def _renderer(log_format: str) -> Processor:
    if log_format == "json":
        return structlog.processors.JSONRenderer(ensure_ascii=False)
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
        structlog.processors.TimeStamper(fmt="iso", utc=True),
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
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Module-level loggers must follow a later reconfiguration (tests, the CLI).
        cache_logger_on_first_use=False,
    )


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


def _logger_name(name: str) -> Processor:
    def add(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        event_dict["logger"] = name
        return event_dict

    return add


def direct_logger(settings: Settings, name: str) -> Any:
    """A structlog logger writing to the stream ``configure_logging`` set up, at its level,
    through the same redaction and renderer; a plain ``structlog.get_logger(name)`` when
    logging was not configured here (the lines then go wherever the caller's logging sends them).
    Bind it after ``configure_logging``: it does not follow a later reconfiguration."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, _HANDLER_MARK, False)), None)
    if not isinstance(handler, logging.StreamHandler):
        return structlog.get_logger(name)
    return structlog.wrap_logger(
        structlog.WriteLogger(handler.stream),
        wrapper_class=structlog.make_filtering_bound_logger(root.level),
        processors=[
            structlog.contextvars.merge_contextvars,
            _logger_name(name),
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            Redactor(settings.secrets),
            _renderer(settings.log_format),
        ],
    )
