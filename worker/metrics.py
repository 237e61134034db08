"""Prometheus metrics: Dramatiq's own, SendCloud calls, job outcomes and queue depths.

A worker started with ``dramatiq worker.app`` serves everything on one port,
``SENDCLOUD_METRICS_PORT`` (default 9191; 0 turns metrics off), path ``/metrics``:

- Dramatiq's middleware metrics (``dramatiq_messages_total``, ``dramatiq_message_errors_total``,
  ``dramatiq_message_retries_total``, ``dramatiq_message_rejects_total``, in-progress gauges and
  the duration histogram), from ``dramatiq.middleware.prometheus.Prometheus``;
- ``sendcloud_api_calls_total{endpoint,status_code}``: one per SendCloud HTTP call, with
  SendCloud's statusCode (``none`` when no reply came);
- ``sendcloud_job_outcomes_total{kind,outcome}``: one per result record a worker writes;
- ``sendcloud_queue_depth{queue}``: messages not yet acknowledged on each product queue, its
  delay queue (``.DQ``) and its dead-letter queue (``.XQ``), read from Redis at scrape time;
  on RabbitMQ (``SENDCLOUD_BROKER_URL``), the messages ready in each, read from RabbitMQ;
- ``sendcloud_inbox_depth{inbox}``: webhook events received and not yet handled by
  ``sendcloud-jobs receipts`` (``sms``, ``mail``), read from Redis at scrape time;
- ``sendcloud_redis_up`` (``sendcloud_rabbitmq_up`` on RabbitMQ): 1 when that read worked;
- ``sendcloud_verifications_total{channel,event}``, ``sendcloud_verifications_refused_total
  {channel,rule}``, ``sendcloud_verification_approval_ratio`` and
  ``sendcloud_verification_breaker_open``: verification counters kept in Redis by producers
  and workers (``producers.verification``), read at scrape time.

Dramatiq runs several worker processes, so metrics use prometheus_client's multiprocess mode: each
process writes its values to files under ``dramatiq_prom_db`` (Dramatiq's variable, default
``$TMPDIR/dramatiq-prometheus``) and a separate exposition process, forked by the Dramatiq CLI,
sums them. Multiprocess mode is chosen when prometheus_client creates its first metric, which is
why this module imports it lazily and points it at the directory before any metric exists.

Everywhere else (tests, the producer side, the CLI) nothing is registered and ``record_*`` are
no-ops, so metrics are off unless a worker turns them on.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import redis
import structlog
from dramatiq import Broker
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware.prometheus import DB_PATH, HTTP_HOST, Prometheus

from producers.brokers import BROKER_NAMESPACE as NAMESPACE
from producers.brokers import is_rabbitmq, rabbitmq_broker, rabbitmq_depths
from producers.contract import ALL_QUEUES

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter
    from prometheus_client.metrics_core import Metric

    from producers.verification import VerifySettings
    from worker.settings import Settings

log = structlog.get_logger(__name__)


API_CALLS = "sendcloud_api_calls_total"
JOB_OUTCOMES = "sendcloud_job_outcomes_total"
JOBS_REDRIVEN = "sendcloud_jobs_redriven_total"
INBOX_DEPTH = "sendcloud_inbox_depth"
INBOXES = ("sms", "mail")
QUEUE_DEPTH = "sendcloud_queue_depth"
RABBITMQ_UP = "sendcloud_rabbitmq_up"
REDIS_UP = "sendcloud_redis_up"
VERIFICATIONS = "sendcloud_verifications_total"
VERIFICATIONS_REFUSED = "sendcloud_verifications_refused_total"
VERIFICATION_APPROVAL = "sendcloud_verification_approval_ratio"
VERIFICATION_BREAKER = "sendcloud_verification_breaker_open"


@dataclass(frozen=True)
class _Counters:
    api_calls: Counter
    job_outcomes: Counter
    redriven: Counter


_counters: _Counters | None = None
_lock = threading.Lock()


def enable(registry: CollectorRegistry | None = None) -> None:
    """Create the counters (idempotent). ``registry``: where to register them (tests)."""
    global _counters
    with _lock:
        if _counters is not None:
            return
        from prometheus_client import CollectorRegistry, Counter

        registry = registry if registry is not None else CollectorRegistry()
        _counters = _Counters(
            api_calls=Counter(
                API_CALLS.removesuffix("_total"),
                "SendCloud HTTP calls, by endpoint and the statusCode SendCloud replied with.",
                ["endpoint", "status_code"],
                registry=registry,
            ),
            job_outcomes=Counter(
                JOB_OUTCOMES.removesuffix("_total"),
                "Finished jobs, by kind and outcome (one per result record).",
                ["kind", "outcome"],
                registry=registry,
            ),
            redriven=Counter(
                JOBS_REDRIVEN.removesuffix("_total"),
                "Jobs the reconciler sent again, by the state it found them in.",
                ["state"],
                registry=registry,
            ),
        )


def disable() -> None:
    global _counters
    with _lock:
        _counters = None


def enabled() -> bool:
    return _counters is not None


def record_api_call(endpoint: str, status_code: int | None) -> None:
    counters = _counters
    if counters is not None:
        code = "none" if status_code is None else str(status_code)
        counters.api_calls.labels(endpoint, code).inc()


def record_redriven(state: str) -> None:
    counters = _counters
    if counters is not None:
        counters.redriven.labels(state).inc()


def record_job_outcome(kind: str, outcome: str) -> None:
    counters = _counters
    if counters is not None:
        counters.job_outcomes.labels(kind, outcome).inc()


class QueueDepthCollector:
    """Reads queue depths on each scrape: from Redis in one pipelined round trip, or from
    RabbitMQ (``broker``) by one queue declaration per queue."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        namespace: str = NAMESPACE,
        queues: Sequence[str] = ALL_QUEUES,
        broker: Broker | None = None,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.queues = tuple(queues)
        self.broker = broker if broker is not None and is_rabbitmq(broker) else None

    def depths(self) -> dict[str, int]:
        """Messages per queue (and its .DQ and .XQ)."""
        if self.broker is not None:
            return rabbitmq_depths(self.broker, self.queues)
        return self._read()[0]

    def inbox_depths(self) -> dict[str, int]:
        """Webhook events not yet handled, per inbox (always in Redis)."""
        pipe = self.client.pipeline(transaction=False)
        for inbox in INBOXES:
            pipe.xlen(f"sendcloud:inbox:{inbox}")  # handled entries are deleted from it
        return {inbox: int(n) for inbox, n in zip(INBOXES, pipe.execute(), strict=True)}

    def _read(self) -> tuple[dict[str, int], dict[str, int]]:
        """Queue depths and inbox depths from Redis, in one round trip."""
        ns = self.namespace
        names: list[str] = []
        pipe = self.client.pipeline(transaction=False)
        for queue in self.queues:
            # The .msgs hash holds every message not yet acknowledged: waiting or being worked on.
            pipe.hlen(f"{ns}:{queue}.msgs")
            pipe.hlen(f"{ns}:{queue}.DQ.msgs")
            pipe.zcard(f"{ns}:{queue}.XQ")
            names += [queue, f"{queue}.DQ", f"{queue}.XQ"]
        for inbox in INBOXES:
            pipe.xlen(f"sendcloud:inbox:{inbox}")  # handled entries are deleted from it
        counts = [int(n) for n in pipe.execute()]
        return (dict(zip(names, counts, strict=False)),
                dict(zip(INBOXES, counts[len(names):], strict=True)))

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        if self.broker is not None:
            up = GaugeMetricFamily(RABBITMQ_UP, "1 if the queue depths could be read from "
                                   "RabbitMQ.")
            meaning = "Messages ready (not held by a consumer), per queue"
        else:
            up = GaugeMetricFamily(REDIS_UP, "1 if the queue depths could be read from Redis.")
            meaning = "Messages not yet acknowledged, per queue"
        depth = GaugeMetricFamily(
            QUEUE_DEPTH, f"{meaning} (.DQ: delayed, .XQ: dead-lettered).", labels=["queue"]
        )
        inboxes = GaugeMetricFamily(
            INBOX_DEPTH, "Webhook events received and not yet handled, per inbox.",
            labels=["inbox"],
        )
        try:
            if self.broker is not None:
                depths, waiting = self.depths(), self.inbox_depths()
            else:
                depths, waiting = self._read()
        except (redis.RedisError, ConnectionClosed) as err:
            log.warning("metrics.queue_depth_failed", error=str(err))
            up.add_metric([], 0)
        else:
            up.add_metric([], 1)
            for queue, count in depths.items():
                depth.add_metric([queue], count)
            for inbox, count in waiting.items():
                inboxes.add_metric([inbox], count)
        yield up
        yield depth
        yield inboxes


class VerificationCollector:
    """Verification counters, kept in Redis by producers and workers, read on each scrape."""

    def __init__(self, client: redis.Redis, settings: VerifySettings | None = None) -> None:
        self.client = client
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from producers.verification import BREAKER_KEY, COUNTS_KEY, VerifySettings, approval

        events = CounterMetricFamily(
            VERIFICATIONS.removesuffix("_total"),
            "Verifications by channel and event: started, resent, sent, approved, locked.",
            labels=["channel", "event"],
        )
        refused = CounterMetricFamily(
            VERIFICATIONS_REFUSED.removesuffix("_total"),
            "Verifications refused by a guardrail, before anything was sent.",
            labels=["channel", "rule"],
        )
        ratio = GaugeMetricFamily(
            VERIFICATION_APPROVAL,
            "Share of the verifications started in the breaker's window that were approved.",
        )
        breaker = GaugeMetricFamily(
            VERIFICATION_BREAKER, "1 while the verification breaker refuses new verifications."
        )
        try:
            counts = self.client.hgetall(COUNTS_KEY)
            open_for = int(self.client.ttl(BREAKER_KEY))
            started, approved = approval(self.client, self.settings or VerifySettings.from_env())
        except redis.RedisError as err:
            log.warning("metrics.verifications_failed", error=str(err))
            return
        for raw, value in sorted(counts.items()):
            name = raw.decode() if isinstance(raw, bytes) else raw
            parts = name.split(":")
            if parts[0] == "refused" and len(parts) == 3:
                refused.add_metric(parts[1:], int(value))
            elif len(parts) == 2:
                events.add_metric(parts, int(value))
        breaker.add_metric([], 1 if open_for > 0 else 0)
        yield events
        yield refused
        yield breaker
        if started:
            ratio.add_metric([], approved / started)
            yield ratio


def build_registry(
    client: redis.Redis, *, namespace: str = NAMESPACE, broker: Broker | None = None
) -> CollectorRegistry:
    """What the exposition serves: every process's files plus the live queue depths (from
    RabbitMQ when ``broker`` is a RabbitmqBroker, else from Redis)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=DB_PATH)
    registry.register(QueueDepthCollector(client, namespace=namespace, broker=broker))
    registry.register(VerificationCollector(client))
    return registry


def make_server(registry: CollectorRegistry, host: str, port: int) -> HTTPServer:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] not in ("/", "/metrics"):
                self.send_error(404)
                return
            body = generate_latest(registry)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per scrape would drown the worker's logs

    return ThreadingHTTPServer((host, port), Handler)


class MetricsPortInUse(Exception):
    """``SENDCLOUD_METRICS_PORT`` is taken: the worker would run with nobody seeing it."""

    def __init__(self, port: int, reason: str) -> None:
        self.port = port
        super().__init__(
            f"SENDCLOUD_METRICS_PORT: port {port} on {HTTP_HOST} is not free ({reason}); "
            "set another port, or 0 to turn metrics off"
        )


def check_port(settings: Settings) -> None:
    """Fail start-up, before any job runs, when the exposition process could not bind.

    Every worker process probes at import, possibly at the same moment, so the probe sets
    SO_REUSEPORT: probes then coexist, while a listener of another program, which does not set
    it, still refuses them. The exposition process binds later, once the probes are closed.
    """
    if settings.metrics_port == 0:
        return
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        probe.bind((HTTP_HOST, settings.metrics_port))
    except OSError as exc:
        raise MetricsPortInUse(settings.metrics_port, exc.strerror or str(exc)) from None
    finally:
        probe.close()


def serve_metrics() -> int:
    """Exposition process, forked by the Dramatiq CLI (see ``SendCloudPrometheus.forks``)."""
    from worker.connections import redis_client
    from worker.settings import Settings

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = DB_PATH
    settings = Settings.from_env()
    # A scrape must answer quickly even with Redis down: one quick retry, then redis_up 0.
    client = redis_client(settings, timeout=2, retries=1)
    # On RabbitMQ the depths come from a connection of the exposition's own.
    broker = rabbitmq_broker(settings.broker_url) if settings.rabbitmq else None
    try:
        server = make_server(
            build_registry(client, namespace=NAMESPACE, broker=broker), HTTP_HOST,
            settings.metrics_port,
        )
    except OSError as exc:
        # Taken since the workers' probe. Dramatiq does not watch its forks: stop the whole
        # worker rather than let it run with nobody seeing its metrics.
        log.error(
            "metrics.port_in_use", port=settings.metrics_port, error=exc.strerror or str(exc)
        )
        os.kill(os.getppid(), signal.SIGTERM)
        return 2
    log.info("metrics.serving", host=HTTP_HOST, port=settings.metrics_port, path="/metrics")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


class SendCloudPrometheus(Prometheus):
    """Dramatiq's Prometheus middleware, plus this product's counters and exposition."""

    @property
    def forks(self) -> list[Any]:
        return [serve_metrics]

    def after_process_boot(self, broker: Broker) -> None:
        _use_multiprocess_mode()
        super().after_process_boot(broker)
        enable()


def _use_multiprocess_mode() -> None:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = DB_PATH
    from prometheus_client import values

    if values.ValueClass is values.MutexValue:
        # prometheus_client was imported before the directory was set; without this every
        # metric would live in this process only and never reach the exposition process.
        values.ValueClass = values.get_value_class()


def install(broker: Broker, settings: Settings) -> bool:
    """Add the metrics middleware unless ``SENDCLOUD_METRICS_PORT`` is 0. Worker processes only."""
    if settings.metrics_port == 0:
        return False
    broker.add_middleware(SendCloudPrometheus())
    return True
