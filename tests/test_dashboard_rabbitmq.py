"""The dashboard on RabbitMQ (``SENDCLOUD_BROKER_URL``): queue depths and dead letters come from
RabbitMQ's queues, through the same readers as the metrics and ``sendcloud-jobs dlq``."""

from __future__ import annotations

from collections.abc import Iterator

import dramatiq
import pytest
import redis

from producers.contract import SMS_QUEUE
from tests.dashboard_support import add_users, csrf_of, dashboard_clients, log_in
from tests.rabbitmq_server import RabbitVhost
from tests.test_rabbitmq import dead_letter
from worker.broker import make_broker
from worker.settings import Settings


@pytest.fixture
def broker(redis_client: redis.Redis, rabbitmq: RabbitVhost) -> Iterator[dramatiq.Broker]:
    made = make_broker(None, redis_client=redis_client,
                       settings=Settings.from_env({"SENDCLOUD_BROKER_URL": rabbitmq.url}))
    yield made
    made.close()


def test_depths_and_dead_letters_on_rabbitmq(
    broker: dramatiq.Broker, redis_client: redis.Redis, redis_url: str, rabbitmq: RabbitVhost,
) -> None:
    message_id = dead_letter(broker, redis_client, rabbitmq, "rabbit-1")
    add_users(redis_client)
    with dashboard_clients(redis_url) as make:
        client = make(SENDCLOUD_BROKER_URL=rabbitmq.url)
        assert log_in(client, "olga").status_code == 303
        queues = client.get("/dashboard/overview.json").json()["queues"]
        sms = next(q for q in queues if q["queue"] == SMS_QUEUE)
        assert (sms["ready"], sms["dead"]) == (0, 1)

        [letter] = client.get("/dashboard/dead-letters.json").json()["letters"]
        assert (letter["message_id"], letter["key"]) == (message_id, "rabbit-1")
        token = csrf_of(client.get("/dashboard/dead-letters").text)
        replayed = client.post("/dashboard/dead-letters/replay",
                               data={"csrf_token": token, "message_id": message_id})
        assert "1 message(s) replayed" in replayed.text
    counts = rabbitmq.counts()
    assert counts[SMS_QUEUE] == (1, 0) and counts[f"{SMS_QUEUE}.XQ"] == (0, 0)
