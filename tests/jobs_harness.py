"""A worker stack for job tests: real Redis, the real broker and actors, the in-process simulator.

``make_stack(redis_url, **settings)`` builds everything a deployment has (RedisBroker with the
worker's middleware, or RabbitmqBroker with ``broker_url=``, Runtime, actors, a Producer on the
same broker) with test-sized delays;
``stack.running(threads)`` runs a real ``dramatiq.Worker`` for a block.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import dramatiq
import redis

from producers import Producer
from producers.contract import SMS_RESULTS_STREAM
from producers.results import decode_fields
from simulator import Simulator
from worker.broker import make_broker
from worker.jobs import declare_job_actors
from worker.jobs.idempotency import deployment_namespace, send_request_id
from worker.jobs.runner import JobRunner
from worker.runtime import Runtime
from worker.sendcloud.client import SendCloudClient
from worker.settings import Settings

TEMPLATE_ID = 7001

#: Test-sized timings: retries come back in milliseconds instead of seconds.
FAST = {
    "retry_base_delay": 0.02,
    "retry_max_delay": 0.1,
    "call_base_delay": 0.001,
    "call_max_delay": 0.004,
    "job_lease": 10.0,
    "pause_seconds": 30.0,
}


def fast_settings(redis_url: str, **overrides: Any) -> Settings:
    base = Settings(
        base_url="http://sendcloud.test",
        sms_user="sim_sms_user",
        sms_key="sim-sms-key-0000",
        api_user="sim_api_user",
        api_key="sim-api-key-0000",
        redis_url=redis_url,
    )
    return dataclasses.replace(base, **{**FAST, **overrides})


def mainland(i: int) -> str:
    return f"138{i:08d}"


@dataclass
class Stack:
    sim: Simulator
    settings: Settings
    redis: redis.Redis
    broker: dramatiq.Broker
    runtime: Runtime
    runner: JobRunner
    actors: dict[str, dramatiq.Actor[..., None]]
    producer: Producer
    workers: list[dramatiq.Worker] = field(default_factory=list)

    @contextmanager
    def running(self, threads: int = 4) -> Iterator[dramatiq.Worker]:
        worker = dramatiq.Worker(self.broker, worker_threads=threads, worker_timeout=50)
        worker.start()
        try:
            yield worker
        finally:
            stop_worker(worker)

    def records(self, stream: str = SMS_RESULTS_STREAM) -> list[dict[str, Any]]:
        return stream_records(self.redis, stream)

    def job_records(self, stream: str = SMS_RESULTS_STREAM) -> list[dict[str, Any]]:
        return [r for r in self.records(stream) if r.get("kind") != "alert"]

    def wait_for_records(
        self, keys: Iterable[str], *, stream: str = SMS_RESULTS_STREAM, deadline: float = 60.0
    ) -> list[dict[str, Any]]:
        """Poll until every key has a final record (or the deadline passes); the records."""
        wanted = set(keys)
        wait_until(lambda: wanted <= {r["key"] for r in self.job_records(stream)}, deadline)
        return self.job_records(stream)

    def wait_until(self, predicate: Callable[[], bool], deadline: float = 30.0) -> bool:
        return wait_until(predicate, deadline)

    def ledger_by_request(self) -> Counter[tuple[str | None, str]]:
        return Counter((e.send_request_id, e.phone) for e in self.sim.ledger.entries())


def stop_worker(worker: dramatiq.Worker) -> None:
    """Stop ``worker`` and take its middleware off its broker. Dramatiq leaves it there, and a
    queue the broker declares later (a replay, another test's actor) would start a consumer
    for the stopped worker, one that nothing stops and that keeps reconnecting to a RabbitMQ
    vhost after its test deleted it."""
    worker.stop()
    middleware = worker.broker.middleware
    middleware[:] = [m for m in middleware if getattr(m, "worker", None) is not worker]


def request_id(client: redis.Redis, key: str) -> str:
    """The sendRequestId workers on ``client``'s database give job ``key`` (no namespace set:
    the deployment's own, kept in that Redis)."""
    return send_request_id(key, deployment_namespace(client, ""))


def stream_records(client: redis.Redis, stream: str = SMS_RESULTS_STREAM) -> list[dict[str, Any]]:
    return [decode_fields(raw or {}) for _, raw in client.xrange(stream) or []]


def wait_until(predicate: Callable[[], bool], deadline: float) -> bool:
    """Poll ``predicate`` until it holds (True) or ``deadline`` seconds pass (False)."""
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


@contextmanager
def stack_factory(redis_url: str, **defaults: Any) -> Iterator[Callable[..., Stack]]:
    """``make(**overrides)`` builds stacks; their clients are closed at the end of the block."""
    made: list[Stack] = []

    def make(**overrides: Any) -> Stack:
        stack = make_stack(redis_url, **{**defaults, **overrides})
        made.append(stack)
        return stack

    try:
        yield make
    finally:
        for stack in made:
            stack.producer.close()
            stack.broker.close()
            stack.redis.close()


def make_stack(
    redis_url: str,
    *,
    clock: Callable[[], float] | None = None,
    sim: Simulator | None = None,
    **overrides: Any,
) -> Stack:
    settings = fast_settings(redis_url, **overrides)
    sim = sim or Simulator()
    sim.seed_template(TEMPLATE_ID)
    client = redis.Redis.from_url(redis_url)
    broker = make_broker(redis_url, settings=settings)
    transport = sim.transport()
    runtime = Runtime(settings, client, lambda: SendCloudClient(settings, transport=transport))
    runner = JobRunner(runtime, clock=clock)
    actors = declare_job_actors(broker, runtime, runner=runner)
    producer = Producer(broker=broker, redis=client)
    return Stack(sim, settings, client, broker, runtime, runner, actors, producer)
