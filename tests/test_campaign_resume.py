"""A producer process killed in the middle of start_campaign, then the campaign resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from producers import CampaignBusy, Producer, campaign_status, start_campaign
from producers.campaign import chunk_key
from producers.contract import SMS_QUEUE

ROOT = Path(__file__).resolve().parent.parent

# Reads numbers from a FIFO the test writes to, so the test decides where the producer is
# when it is killed.
CHILD = """
import sys
from dramatiq.brokers.redis import RedisBroker
from producers import Producer, start_campaign
url, fifo = sys.argv[1], sys.argv[2]
producer = Producer(broker=RedisBroker(url=url))
with open(fifo) as lines:
    start_campaign("killed", 7, lines, producer=producer)
"""


@pytest.fixture
def producer(redis_url: str) -> Iterator[Producer]:
    broker = RedisBroker(url=redis_url)
    yield Producer(broker=broker, redis=redis.Redis.from_url(redis_url))
    broker.close()


def numbers(n: int) -> list[str]:
    return [f"139{i:08d}" for i in range(n)]


def queued_chunk_keys(client: redis.Redis) -> Counter[str]:
    return Counter(json.loads(m)["args"][0]["key"]
                   for m in client.hvals(f"dramatiq:{SMS_QUEUE}.msgs"))


def wait_for(predicate: Callable[[], bool], deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def test_producer_killed_mid_enqueue_resumes_each_chunk_once(
    redis_url: str, producer: Producer, tmp_path: Path
) -> None:
    client = producer.redis
    fifo = tmp_path / "numbers"
    os.mkfifo(fifo)
    child = subprocess.Popen([sys.executable, "-c", CHILD, redis_url, str(fifo)],
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        all_numbers = numbers(12_345)
        with open(fifo, "w") as pipe:
            # Three full chunks and half of a fourth; the producer then waits for more input.
            pipe.write("\n".join(all_numbers[:7000]) + "\n")
            pipe.flush()
            wait_for(lambda: client.bitcount("sendcloud:campaign:killed:enqueued") == 3)
            # "Start" pressed again while the first producer runs: refused, nothing enqueued.
            with pytest.raises(CampaignBusy, match=f"pid {child.pid}"):
                start_campaign("killed", 7, all_numbers, producer=producer)
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert campaign_status("killed", producer=producer).state == "enqueuing"
    assert queued_chunk_keys(client) == Counter({chunk_key("killed", i): 1 for i in range(3)})

    # The dead process's lock is taken over at once; only the missing chunks are enqueued.
    resumed = start_campaign("killed", 7, iter(all_numbers), producer=producer)
    assert (resumed.resumed, resumed.skipped, resumed.enqueued, resumed.chunks) == (
        True, 3, 4, 7)
    assert queued_chunk_keys(client) == Counter({chunk_key("killed", i): 1 for i in range(7)})
    status = campaign_status("killed", producer=producer)
    assert (status.state, status.valid, status.chunks_enqueued, status.pending) == (
        "enqueued", 12_345, 7, 12_345)
    assert client.get("sendcloud:campaign:killed:lock") is None
