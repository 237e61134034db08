"""The module the ``dramatiq`` command loads: ``dramatiq worker.app --queues sendcloud.codes``.

Importing it reads the settings (a missing or malformed one stops the worker with one line
naming the variable and the rule, exit status 2), configures logging, builds the broker and
declares every actor on it.
"""

from __future__ import annotations

import logging
import sys

import dramatiq
import redis
import structlog

from worker import metrics
from worker.broker import make_broker
from worker.broker.redis_checks import inspect
from worker.connections import redis_client
from worker.email_status.actor import declare_poll_actor
from worker.jobs import declare_job_actors
from worker.jobs.results import create_result_streams
from worker.logs import configure_logging
from worker.metrics import MetricsPortInUse
from worker.runtime import Runtime
from worker.sendcloud.client import SendCloudClient
from worker.settings import ConfigurationError, Settings


def _load_settings() -> Settings:
    try:
        loaded = Settings.from_env().require_credentials()
        metrics.check_port(loaded)
    except (ConfigurationError, MetricsPortInUse) as exc:
        # Dramatiq would print the import's traceback with this line at its very end.
        print(f"sendcloud-jobs worker: error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    return loaded


settings = _load_settings()
configure_logging(settings)

# The broker's own client (connections follow a Sentinel failover), apart from the actors'.
broker = make_broker(None, redis_client=redis_client(settings), settings=settings)
metrics.install(broker, settings)
dramatiq.set_broker(broker)

runtime = Runtime(
    settings,
    redis_client(settings),
    lambda: SendCloudClient(settings),
)

def _check_redis() -> None:
    """An evicting Redis, or one that keeps nothing, breaks the promise of exactly one final
    record; a skewed clock here misleads logs (decisions use Redis's clock). Said at start."""
    log = structlog.get_logger("worker.app")
    try:
        report = inspect(runtime.redis)
        create_result_streams(runtime.redis)
    except redis.RedisError as exc:  # the worker waits for Redis like any consumer
        log.warning("redis.setup_unchecked", error=type(exc).__name__)
        return
    for fine, line in report.lines():
        if not fine:
            level = logging.ERROR if report.evicts or line.startswith("clock") else logging.WARNING
            log.log(level, "redis.setup", check=line)


_check_redis()
actors = declare_job_actors(broker, runtime)
poll_actor = declare_poll_actor(broker, runtime)
