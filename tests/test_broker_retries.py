"""Redis going away under the broker: a lost retry is a warning, a consumer reconnects."""

from __future__ import annotations

from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.stub import StubBroker
from dramatiq.errors import BrokerConnectionError
from structlog.testing import capture_logs

from tests.redis_server import free_port
from worker.broker import RedisUnreachable, make_broker
from worker.broker.retries import ReconciledRetries
from worker.settings import Settings


class RedisAwayBroker(StubBroker):
    def enqueue(self, message: Any, *, delay: int | None = None) -> Any:
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")


@pytest.fixture
def broker() -> RedisAwayBroker:
    broker = RedisAwayBroker(middleware=[])
    broker.add_middleware(ReconciledRetries(max_retries=5))

    @dramatiq.actor(broker=broker, actor_name="job")
    def job() -> None: ...

    return broker


def test_a_retry_lost_to_redis_is_a_warning(broker: RedisAwayBroker) -> None:
    [middleware] = [m for m in broker.middleware if isinstance(m, ReconciledRetries)]
    message = dramatiq.Message(queue_name="default", actor_name="job", args=(), kwargs={},
                               options={})
    with capture_logs() as logs:
        middleware.after_process_message(broker, message, exception=dramatiq.Retry(delay=10))
    assert [entry["event"] for entry in logs] == ["job.retry_not_enqueued"]
    assert logs[0]["log_level"] == "warning" and logs[0]["message_id"] == message.message_id


def test_other_failures_still_raise() -> None:
    class Broken(StubBroker):
        def enqueue(self, message: Any, *, delay: int | None = None) -> Any:
            raise ValueError("a bug")

    broken = Broken(middleware=[])
    broken.add_middleware(ReconciledRetries(max_retries=5))
    dramatiq.actor(lambda: None, broker=broken, actor_name="job")
    message = dramatiq.Message(queue_name="default", actor_name="job", args=(), kwargs={},
                               options={})
    [middleware] = [m for m in broken.middleware if isinstance(m, ReconciledRetries)]
    with pytest.raises(ValueError, match="a bug"):
        middleware.after_process_message(broken, message, exception=dramatiq.Retry(delay=10))


def test_the_broker_raises_one_error_both_dramatiq_and_redis_py_know() -> None:
    """Dramatiq's consumer threads reconnect on their own connection error; a redis-py one
    from a delayed message's enqueue used to kill the thread."""
    broker = make_broker(f"redis://127.0.0.1:{free_port()}/0", settings=Settings.from_env({}))
    dramatiq.actor(lambda: None, broker=broker, actor_name="job")
    message = dramatiq.Message(queue_name="default", actor_name="job", args=(), kwargs={},
                               options={})
    with pytest.raises(RedisUnreachable) as info:
        broker.enqueue(message)
    assert isinstance(info.value, BrokerConnectionError)
    assert isinstance(info.value, redis.ConnectionError)
