"""Chaos: real worker processes, SIGKILLs, a killed Redis connection and a faulty SendCloud.

One run: a campaign, verification codes and a few jobs that can never succeed, drained by the
Procfile's ``worker`` and ``codes`` entries (``dramatiq worker.app``) against the simulator
(a child process, over HTTP) injecting 501s, frequency-limit replies, connection resets and
replies lost after the send took effect. Mid-run, in order: SIGKILL of the ``worker`` group,
``CLIENT KILL`` of every worker connection, SIGKILL of the ``codes`` group, SIGKILL of the
``worker`` group; each killed group is restarted at once. The run is made twice: with the
queues in Redis, and in RabbitMQ (a vhost of the test's own; the connection cut then also
closes every connection to the vhost with ``rabbitmqctl close_all_connections``). Then nothing
may be lost, doubled or left behind:

* every campaign number is in the simulator's ledger exactly once, every code exactly once;
* every job has exactly one final result record;
* no idempotency record is left ``queued`` or ``in_flight``, and no message is left in a queue,
  a delay queue (``.DQ``) or an unacknowledged set;
* the dead-letter queues hold exactly the jobs that failed for good (unknown template).

Waits poll against deadlines; nothing is timed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from bench.common import (
    TEMPLATE_ID,
    SimHost,
    WorkerGroup,
    broker_backlog,
    mainland,
    wait_for,
    worker_command,
    worker_env,
    worker_groups,
)
from producers import Producer, campaign_status, start_campaign
from producers.brokers import rabbitmq_broker
from producers.campaign import chunk_key
from producers.contract import ALL_QUEUES, CODES_QUEUE, SMS_QUEUE, SMS_RESULTS_STREAM
from producers.idempotency import RECORD_PREFIX
from producers.results import decode_fields
from tests.chaos.conftest import CHAOS_DB, ChaosSize
from tests.jobs_harness import request_id
from tests.rabbitmq_server import RabbitVhost
from worker.broker import rabbitmq as rabbit
from worker.broker.dead_letters import dead_letter_keys

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1200)]

OBSERVER = "sendcloud-chaos-observer"
CAMPAIGN_ID = "chaos"
UNKNOWN_TEMPLATE = 999_999
FAULTS = {"server_error_rate": 0.05, "throttle_rate": 0.05, "reset_rate": 0.03,
          "drop_after_accept_rate": 0.03}
#: Quick redelivery and retries; attempts high enough that injected faults never exhaust them.
WORKER_SETTINGS = {
    "SENDCLOUD_BROKER_HEARTBEAT_TIMEOUT": "2",
    "SENDCLOUD_BROKER_MAINTENANCE_CHANCE": "100000",
    "SENDCLOUD_RETRY_BASE_DELAY": "0.05",
    "SENDCLOUD_RETRY_MAX_DELAY": "0.5",
    "SENDCLOUD_CALL_BASE_DELAY": "0.01",
    "SENDCLOUD_CALL_MAX_DELAY": "0.05",
    "SENDCLOUD_JOB_MAX_ATTEMPTS": "40",
    "SENDCLOUD_JOB_LEASE": "20",
    "SENDCLOUD_METRICS_PORT": "0",
    "dramatiq_worker_timeout": "200",
}


def _results(client: redis.Redis) -> list[dict[str, Any]]:
    return [decode_fields(raw) for _, raw in client.xrange(SMS_RESULTS_STREAM) or [] if raw]


def _job_records(client: redis.Redis) -> list[dict[str, Any]]:
    return [r for r in _results(client) if r.get("kind") not in ("alert", "campaign")]


def _kill_worker_connections(client: redis.Redis) -> int:
    """CLIENT KILL every connection of the workers: this suite's database, not ours."""
    killed = 0
    for info in client.client_list():
        if int(info.get("db", -1)) == CHAOS_DB and info.get("name") != OBSERVER:
            killed += int(client.execute_command("CLIENT", "KILL", "ID", info["id"]))
    return killed


def _dead_lettered_keys(client: redis.Redis) -> Counter[str]:
    keys: Counter[str] = Counter()
    for queue in ALL_QUEUES:
        _, messages = dead_letter_keys("dramatiq", queue)
        for raw in client.hvals(messages):
            payload = json.loads(raw)["args"][0]
            keys[str(payload.get("key"))] += 1
    return keys


def _unfinished_records(client: redis.Redis) -> dict[str, str]:
    left = {}
    for raw in client.scan_iter(match=f"{RECORD_PREFIX}*", count=1000):
        state = client.hget(raw, "state")
        if state in (b"queued", b"in_flight"):
            left[raw.decode()] = state.decode()
    return left


class Queues:
    """The broker under test: Redis (the queues beside the records) or a RabbitMQ vhost."""

    def __init__(self, client: redis.Redis, vhost: RabbitVhost | None) -> None:
        self.client = client
        self.vhost = vhost
        self.broker = rabbitmq_broker(vhost.url) if vhost else RedisBroker(client=client)

    @property
    def env(self) -> dict[str, str]:
        return {"SENDCLOUD_BROKER_URL": self.vhost.url} if self.vhost else {}

    def ready(self, group: WorkerGroup, queue: str) -> None:
        vhost = self.vhost
        group.wait_ready(self.client, consumers=(lambda: vhost.consumers(queue)) if vhost
                         else None)

    def cut_connections(self) -> int:
        """Every worker connection, to Redis and (on RabbitMQ) to the vhost, closed at once."""
        cut = _kill_worker_connections(self.client)
        return cut + (self.vhost.close_connections() if self.vhost else 0)

    def backlog(self) -> dict[str, Any]:
        return dict(self.vhost.backlog()) if self.vhost else broker_backlog(self.client)

    def dead_lettered_keys(self) -> Counter[str]:
        if self.vhost is None:
            return _dead_lettered_keys(self.client)
        return Counter(str(x.key) for x in rabbit.list_dead_letters(self.broker, self.client))


@pytest.fixture(params=["redis", "rabbitmq"])
def queues(request: pytest.FixtureRequest, chaos_redis_url: str) -> Iterator[Queues]:
    client = redis.Redis.from_url(chaos_redis_url, client_name=OBSERVER)
    vhost = request.getfixturevalue("rabbitmq") if request.param == "rabbitmq" else None
    made = Queues(client, vhost)
    yield made
    made.broker.close()
    client.close()


def test_nothing_lost_doubled_or_left_behind(
    chaos_size: ChaosSize, queues: Queues, chaos_redis_url: str, sim_host: SimHost,
    tmp_path: Path,
) -> None:
    """On RabbitMQ the connection cut closes the vhost's connections (and the Redis ones)."""
    client = queues.client
    # Latency keeps jobs in flight long enough for every event to strike mid-run.
    for endpoint, latency in (("/smsapi/send", 2.0), ("/smsapi/sendCode", 0.5)):
        sim_host.admin.set_faults(endpoint, latency=latency, **FAULTS)
    producer = Producer(broker=queues.broker, redis=client)

    numbers = [mainland(i) for i in range(chaos_size.numbers)]
    start = start_campaign(CAMPAIGN_ID, TEMPLATE_ID, numbers, producer=producer)
    codes = {producer.send_code(mainland(500_000_000 + i), f"{100000 + i}", sign_id=1):
             mainland(500_000_000 + i) for i in range(chaos_size.codes)}
    invalid = {producer.send_sms(UNKNOWN_TEMPLATE, [mainland(600_000_000 + i)]) for i in range(3)}
    chunks = {chunk_key(CAMPAIGN_ID, i) for i in range(start.chunks)}
    expected_keys = chunks | set(codes) | invalid

    env = worker_env(chaos_redis_url, sim_host.url, **WORKER_SETTINGS, **queues.env)
    sms = WorkerGroup("worker", worker_command("worker", processes=1, threads=2), env,
                      tmp_path / "worker.log")
    code_workers = WorkerGroup("codes", worker_command("codes", processes=1), env,
                               tmp_path / "codes.log")
    step = max(1, chaos_size.codes // 8)

    def logs() -> str:
        return sms.log_tail() + "\n----\n" + code_workers.log_tail()

    def progressed(since: int) -> Callable[[], bool]:
        # Codes go out one by one (a chunk's 2000 numbers land at once): they pace the events.
        return lambda: sim_host.count("code") >= min(chaos_size.codes, since + step)

    with worker_groups(sms, code_workers):
        queues.ready(sms, SMS_QUEUE)
        queues.ready(code_workers, CODES_QUEUE)
        events: list[str] = []
        for event in ("kill worker", "client kill", "kill codes", "kill worker"):
            # Each event waits for fresh progress, so it strikes while jobs are in flight.
            assert wait_for(progressed(sim_host.count("code")), chaos_size.deadline), logs()
            if event == "client kill":
                assert queues.cut_connections() > 0
            else:
                group = sms if event == "kill worker" else code_workers
                group.kill()
                group.restart()
                queues.ready(group, SMS_QUEUE if group is sms else CODES_QUEUE)
            events.append(f"{event}: {sim_host.count('sms')} numbers, "
                          f"{sim_host.count('code')} codes")

        def all_final() -> bool:
            return {r["key"] for r in _job_records(client)} >= expected_keys

        assert wait_for(all_final, chaos_size.deadline, interval=0.5), \
            (events, dict(list(_unfinished_records(client).items())[:5]), queues.backlog(),
             logs())
        assert wait_for(lambda: not queues.backlog(), 120, interval=0.5), \
            (queues.backlog(), logs())

    ledger = sim_host.entries()
    sms_phones = Counter(phone for kind, phone, _, _ in ledger if kind == "sms")
    assert sms_phones == Counter(numbers), "a campaign number was lost or sent twice"
    sent_codes = Counter((rid, phone) for kind, phone, rid, _ in ledger if kind == "code")
    assert sent_codes == Counter({(request_id(client, k), p): 1 for k, p in codes.items()})

    records = Counter(r["key"] for r in _job_records(client))
    assert records == Counter(dict.fromkeys(expected_keys, 1))
    assert _unfinished_records(client) == {}
    assert queues.backlog() == {}
    dead = queues.dead_lettered_keys()
    if queues.vhost is None:
        assert dead == Counter(dict.fromkeys(invalid, 1))
    else:
        # RabbitMQ dead-letters on the consumer's nack: a nack lost with its connection (cut
        # or killed just after the final record) brings the message back, and the job, already
        # final, acks it. The record says "failed" either way (below); the letter may be gone.
        assert set(dead) <= invalid and max(dead.values(), default=0) <= 1, dead
    outcomes = {r["key"]: r for r in _job_records(client)}
    assert {outcomes[k]["outcome"] for k in invalid} == {"failed"}
    assert {outcomes[k]["outcome"] for k in chunks | set(codes)} <= {"sent", "duplicate"}

    status = campaign_status(CAMPAIGN_ID, producer=producer)
    assert status.finished and status.accepted == chaos_size.numbers
    # The kills struck work in flight: some jobs were taken over from a dead worker.
    takeovers = sum(int(client.hget(f"{RECORD_PREFIX}{k}", "takeovers") or 0)
                    for k in expected_keys)
    assert takeovers > 0, events
    print(f"chaos on {'rabbitmq' if queues.vhost else 'redis'}: {chaos_size.numbers} numbers, "
          f"{len(codes)} codes, {sim_host.count()} sends, {takeovers} takeovers; {events}")
