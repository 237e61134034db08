from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import dramatiq
import httpx
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from prometheus_client import CollectorRegistry
from redis.backoff import NoBackoff
from redis.retry import Retry

from producers.contract import ALL_QUEUES, CODES_QUEUE, SMS_QUEUE
from worker import metrics
from worker.broker import dead_letters as dlq
from worker.settings import Settings


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    registry = CollectorRegistry()
    metrics.enable(registry)
    yield registry
    metrics.disable()


def test_recording_is_a_no_op_until_enabled() -> None:
    assert not metrics.enabled()
    metrics.record_api_call("smsapi/send", 200)
    metrics.record_job_outcome("sms", "sent")  # nothing to count into, nothing raised


def test_counters_carry_endpoint_status_kind_and_outcome(registry: CollectorRegistry) -> None:
    metrics.record_api_call("smsapi/send", 200)
    metrics.record_api_call("smsapi/send", 200)
    metrics.record_api_call("smsapi/send", None)
    metrics.record_job_outcome("code", "expired")

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value(metrics.API_CALLS, endpoint="smsapi/send", status_code="200") == 2
    assert value(metrics.API_CALLS, endpoint="smsapi/send", status_code="none") == 1
    assert value(metrics.JOB_OUTCOMES, kind="code", outcome="expired") == 1


def test_install_honours_port_zero() -> None:
    broker = StubBroker()
    before = len(broker.middleware)

    assert metrics.install(broker, Settings(metrics_port=0)) is False
    assert len(broker.middleware) == before
    assert metrics.install(broker, Settings(metrics_port=9191)) is True
    assert isinstance(broker.middleware[-1], metrics.SendCloudPrometheus)
    assert metrics.serve_metrics in broker.middleware[-1].forks


def test_queue_depth_counts_waiting_delayed_and_dead_letters(redis_url: str) -> None:
    broker = RedisBroker(url=redis_url)
    try:

        @dramatiq.actor(broker=broker, queue_name=SMS_QUEUE, actor_name="noop")
        def noop() -> None:
            pass

        noop.send()
        noop.send()
        noop.send_with_options(delay=60_000)
        zset, _ = dlq.dead_letter_keys(broker.namespace, CODES_QUEUE)
        broker.client.zadd(zset, {"dead-1": time.time() * 1000})

        depths = metrics.QueueDepthCollector(broker.client).depths()
    finally:
        broker.close()

    assert depths[SMS_QUEUE] == 2
    assert depths[f"{SMS_QUEUE}.DQ"] == 1
    assert depths[f"{CODES_QUEUE}.XQ"] == 1
    assert len(depths) == 3 * len(ALL_QUEUES)
    assert sum(depths.values()) == 4


def serve(client: redis.Redis) -> tuple[str, threading.Thread, metrics.HTTPServer]:
    server = metrics.make_server(metrics.build_registry(client), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{server.server_address[1]}", thread, server


def test_exposition_serves_queue_depths(redis_client: redis.Redis) -> None:
    redis_client.hset(f"dramatiq:{CODES_QUEUE}.msgs", "m1", "x")
    redis_client.xadd("sendcloud:inbox:sms", {"event": "{}", "received_at": "1"})
    url, thread, server = serve(redis_client)
    try:
        body = httpx.get(f"{url}/metrics").text
        missing = httpx.get(f"{url}/nope").status_code
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

    assert f'{metrics.QUEUE_DEPTH}{{queue="{CODES_QUEUE}"}} 1.0' in body
    assert f'{metrics.QUEUE_DEPTH}{{queue="{SMS_QUEUE}.XQ"}} 0.0' in body
    assert f"{metrics.REDIS_UP} 1.0" in body
    assert f'{metrics.INBOX_DEPTH}{{inbox="sms"}} 1.0' in body
    assert f'{metrics.INBOX_DEPTH}{{inbox="mail"}} 0.0' in body
    assert missing == 404


def test_exposition_reports_redis_down_instead_of_failing() -> None:
    from tests.redis_server import free_port

    down = redis.Redis(port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    url, thread, server = serve(down)
    try:
        response = httpx.get(f"{url}/metrics")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

    assert response.status_code == 200
    assert f"{metrics.REDIS_UP} 0.0" in response.text
    assert metrics.QUEUE_DEPTH + "{" not in response.text


def test_worker_counts_calls_and_outcomes_of_real_jobs(
    redis_url: str, registry: CollectorRegistry
) -> None:
    from tests.jobs_harness import make_stack

    stack = make_stack(redis_url)
    try:
        keys = [
            stack.producer.send_code("13800000001", "1234", sign_id=1),
            stack.producer.send_code("13800000002", "1234", sign_id=1, expires_in=0.001),
        ]
        time.sleep(0.01)  # the second code expires in the queue
        with stack.running(threads=2):
            stack.wait_for_records(keys, deadline=20)
    finally:
        stack.producer.close()
        stack.redis.close()

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value(metrics.API_CALLS, endpoint="/smsapi/sendCode", status_code="200") == 1
    assert value(metrics.JOB_OUTCOMES, kind="code", outcome="sent") == 1
    assert value(metrics.JOB_OUTCOMES, kind="code", outcome="expired") == 1
