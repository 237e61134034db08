"""The whole pipeline in one process, on a fresh machine: ``sendcloud-jobs demo``.

What runs is the production code path, with two stand-ins:

- the broker is Dramatiq's real ``RedisBroker`` (same Lua scripts, same keys) on an in-memory
  fakeredis server. ``REDIS_URL`` is ignored: demo jobs on a deployment's queues would be sent
  by its workers, through its SendCloud account. Only an explicit ``--redis-url`` runs the demo
  on a real Redis, and then only on a database that holds no sendcloud-jobs data, with its
  queues in a Dramatiq namespace of its own (``sendcloud-demo-<run>``) that no worker serves;
  everything it wrote there is removed at the end;
- SendCloud is the bundled simulator, called in process through its httpx transport.

Workers are ``dramatiq.Worker`` threads running the real actors. The demo enqueues a small
campaign (with invalid and duplicate numbers), verification codes (one waits in the queue past
its expiry, as if the workers had been down), a voice code, an address-list add, update and
delete, and one emailStatus poll; then it summarises the result streams.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import dramatiq
import httpx
import redis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from producers import Producer, start_campaign
from producers.campaign_report import CampaignStatus, campaign_status
from producers.contract import (
    EMAIL_STATUS_STREAM,
    KEY_PREFIX,
    MEMBERS_RESULTS_STREAM,
    SMS_RESULTS_STREAM,
)
from producers.results import decode_fields
from simulator import Simulator
from worker.broker import make_broker
from worker.email_status.actor import declare_poll_actor
from worker.email_status.poller import CURSOR_KEY
from worker.jobs import declare_job_actors
from worker.logs import configure_logging
from worker.runtime import Runtime
from worker.sendcloud.client import SMS_SEND as SEND_PATH
from worker.sendcloud.client import SendCloudClient
from worker.settings import Settings

TEMPLATE_ID = 1
SIGN_ID = 1
WORKER_THREADS = 8
DEADLINE_S = 25.0
STREAMS = {"sms": SMS_RESULTS_STREAM, "members": MEMBERS_RESULTS_STREAM,
           "email_status": EMAIL_STATUS_STREAM}  # fmt: skip
#: How long the doomed code may live; the workers start only after it has passed.
SHORT_EXPIRY_S = 0.3
EMAILS = 30


class LoseFirstReply(httpx.BaseTransport):
    """Loses the reply to the first request for ``path`` after SendCloud has acted on it.

    The worst case of a network: the SMS went out but the worker cannot know. The retry carries
    the same sendRequestId, SendCloud refuses it as a duplicate, and nobody gets two SMS.
    """

    def __init__(self, inner: httpx.BaseTransport, path: str) -> None:
        self.inner = inner
        self.path = path
        self.lost = False
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        with self._lock:
            lose = request.url.path == self.path and not self.lost
            self.lost = self.lost or lose
        if lose:
            raise httpx.ReadError("connection reset before the reply arrived", request=request)
        return response


class DemoError(Exception):
    """The demo could not finish; the message says what was left."""


@dataclass
class DemoResult:
    broker: str
    streams: dict[str, Counter[tuple[str, str]]]
    campaign: CampaignStatus
    simulator_sms: int  # messages the simulator delivered
    poll_note: str
    elapsed: float
    keys: dict[str, str] = field(default_factory=dict)
    removed_keys: int = 0  # on a real Redis: what the demo wrote there and then removed


def demo_settings(redis_url: str) -> Settings:
    """Settings for the simulator's demo account, with demo-sized retry delays."""
    sim = Simulator()
    base = Settings(
        base_url="http://sendcloud.simulator",
        sms_user=sim.sms_user,
        sms_key="sim-sms-key-0000",
        api_user=sim.api_user,
        api_key="sim-api-key-0000",
        redis_url=redis_url,
        metrics_port=0,
        log_level="ERROR",
    )
    return dataclasses.replace(base, retry_base_delay=0.05, retry_max_delay=0.5)


def connect(redis_url: str | None) -> tuple[redis.Redis, str]:
    if redis_url:
        client = redis.Redis.from_url(redis_url)
        client.ping()
        from worker.cli.health import display_url

        held = sum(1 for _ in client.scan_iter(match=f"{KEY_PREFIX}*", count=1000))
        if held:
            client.close()
            raise DemoError(
                f"{display_url(redis_url)} holds sendcloud-jobs data ({held} keys): the demo "
                "needs a database of its own, e.g. the same server with /15 at the end"
            )
        return client, display_url(redis_url)
    import fakeredis

    # FakeRedis runs Lua through lupa, so Dramatiq's dispatch script runs unchanged.
    return fakeredis.FakeRedis(), "embedded (fakeredis, in memory)"


def _stream_tip(client: redis.Redis, stream: str) -> str:
    last: list[Any] = list(client.xrevrange(stream, count=1) or [])
    if not last:
        return "0-0"
    entry_id = last[0][0]
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def _count_since(client: redis.Redis, stream: str, after: str) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for entry_id, raw in client.xrange(stream, min=after) or []:
        text_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        if text_id == after:
            continue
        fields = decode_fields(raw or {})
        if stream == EMAIL_STATUS_STREAM:
            counts[(fields.get("event", "?"), fields.get("status", ""))] += 1
        else:
            counts[(fields.get("kind", "?"), fields.get("outcome", "?"))] += 1
    return counts


def campaign_numbers(count: int) -> list[str]:
    """``count`` numbers as an upload would have them: mixed formats, a few bad, a few twice."""
    numbers = [f"139{i:08d}" for i in range(count)]
    numbers[3] = "+86 " + numbers[3]
    return [*numbers, numbers[0], numbers[1], "12345", "not a phone"]


class Demo:
    def __init__(self, console: Console, redis_url: str | None = None) -> None:
        self.console = console
        self.redis_url = redis_url
        self.run_id = uuid.uuid4().hex[:8]

    def run(self) -> DemoResult:
        started = time.monotonic()
        client, where = connect(self.redis_url)
        settings = demo_settings(self.redis_url or "redis://embedded")
        configure_logging(settings)
        sim = Simulator()
        sim.seed_template(TEMPLATE_ID, "Hello %name%, your order has shipped")
        sim.seed_email_status(EMAILS, spacing_seconds=20)
        sim.advance_email_status(count=20, status=1)
        sim.advance_email_status(count=3, status=4, sub_status=406)
        tips = {name: _stream_tip(client, stream) for name, stream in STREAMS.items()}
        namespace = f"sendcloud-demo-{self.run_id}"
        broker = make_broker(None, redis_client=client, settings=settings, namespace=namespace)
        transport = LoseFirstReply(sim.transport(), SEND_PATH)
        runtime = Runtime(settings, client, lambda: SendCloudClient(settings, transport=transport))
        declare_job_actors(broker, runtime)
        poll_actor = declare_poll_actor(broker, runtime)
        producer = Producer(broker=broker, redis=client, wait_replicas=0)
        try:
            with self._progress() as progress:
                keys, campaign_id, poll_note = self._work(
                    progress, sim, settings, broker, producer, poll_actor, client
                )
            status = campaign_status(campaign_id, producer=producer)
            streams = {name: _count_since(client, STREAMS[name], tip) for name, tip in tips.items()}
        finally:
            producer.close()
            broker.close()
            removed = self._clean_up(client, namespace) if self.redis_url else 0
        return DemoResult(
            broker=where,
            streams=streams,
            campaign=status,
            simulator_sms=len(sim.ledger),
            poll_note=poll_note,
            elapsed=time.monotonic() - started,
            keys=keys,
            removed_keys=removed,
        )

    @staticmethod
    def _clean_up(client: redis.Redis, namespace: str) -> int:
        """Remove what the demo wrote: its queues, and the sendcloud keys of a database that
        held none when it began (``connect`` checked)."""
        removed = 0
        for pattern in (f"{namespace}:*", f"{KEY_PREFIX}*"):
            batch = list(client.scan_iter(match=pattern, count=1000))
            for start in range(0, len(batch), 500):
                removed += int(client.unlink(*batch[start : start + 500]))
        return removed

    @contextmanager
    def _progress(self) -> Iterator[Progress]:
        progress = Progress(
            TextColumn("{task.description:<21}"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            console=self.console,
        )
        with progress:
            yield progress

    def _work(
        self,
        progress: Progress,
        sim: Simulator,
        settings: Settings,
        broker: Any,
        producer: Producer,
        poll_actor: dramatiq.Actor[Any, Any],
        client: redis.Redis,
    ) -> tuple[dict[str, str], str, str]:
        run = self.run_id
        # Enqueued while no worker runs: by the time one starts, this code has expired.
        keys = {
            "code (expired)": producer.send_code(
                "13800000009", "4321", sign_id=SIGN_ID, expires_in=SHORT_EXPIRY_S,
                idempotency_key=f"demo-{run}-code-late",
            ),
        }  # fmt: skip
        expired_at = time.monotonic() + SHORT_EXPIRY_S
        address = f"demo-{run}@lists.example.com"
        with SendCloudClient(settings, transport=sim.transport()) as api:
            api.add_address_list(address, "Demo newsletter")
        time.sleep(max(0.0, expired_at - time.monotonic()) + 0.05)

        worker = dramatiq.Worker(broker, worker_threads=WORKER_THREADS, worker_timeout=50)
        worker.start()
        try:
            campaign_id = f"demo-{run}"
            campaign_task = progress.add_task("campaign", total=None, note="")
            start = start_campaign(
                campaign_id, TEMPLATE_ID, campaign_numbers(40), {"name": "Ada"}, producer=producer
            )
            progress.update(campaign_task, total=max(start.chunks, 1))
            codes = {
                "code": producer.send_code(
                    "13800000001", "123456", sign_id=SIGN_ID, idempotency_key=f"demo-{run}-code-1"
                ),
                "code (repeat, same key)": producer.send_code(
                    "13800000001", "123456", sign_id=SIGN_ID, idempotency_key=f"demo-{run}-code-1"
                ),
                "code (second user)": producer.send_code(
                    "13800000002", "654321", sign_id=SIGN_ID, idempotency_key=f"demo-{run}-code-2"
                ),
                "voice code": producer.send_voice_code(
                    "13800000003", "2468", idempotency_key=f"demo-{run}-voice"
                ),
            }
            keys.update(codes)
            code_task = progress.add_task(
                "verification codes", total=len(set(keys.values())), note=""
            )

            poll_note = self._start_poll(client, poll_actor)
            poll_task = progress.add_task("emailStatus poll", total=1, note="")

            members_task = progress.add_task("address-list members", total=3, note="")
            member_steps: list[Callable[[], str]] = [
                lambda: producer.add_members(
                    address, ["ada@example.com", "bob@example.com", "eve@example.com"],
                    names=["Ada", "Bob", "Eve"], idempotency_key=f"demo-{run}-members-add",
                ),
                lambda: producer.update_members(
                    address, ["bob@example.com"], names=["Robert"],
                    idempotency_key=f"demo-{run}-members-update",
                ),
                lambda: producer.delete_members(
                    address, ["eve@example.com"], idempotency_key=f"demo-{run}-members-delete"
                ),
            ]  # fmt: skip
            member_key = member_steps.pop(0)()
            keys["members add"] = member_key

            deadline = time.monotonic() + DEADLINE_S
            while True:
                status = campaign_status(campaign_id, producer=producer)
                progress.update(
                    campaign_task, total=max(status.chunks, 1), completed=status.chunks_done,
                    note=f"{status.accepted} accepted, {status.invalid} invalid, "
                    f"{status.duplicates} duplicates",
                )  # fmt: skip
                done_codes = sum(producer.get_result(k) is not None for k in set(codes.values()))
                late_done = producer.get_result(keys["code (expired)"]) is not None
                progress.update(code_task, completed=done_codes + late_done)
                if member_key and producer.get_result(member_key) is not None:
                    progress.advance(members_task)
                    if member_steps:
                        member_key = member_steps.pop(0)()
                        keys[f"members step {3 - len(member_steps)}"] = member_key
                    else:
                        member_key = ""
                poll_done = (
                    broker.client.hlen(f"{broker.namespace}:{poll_actor.queue_name}.msgs") == 0
                )
                progress.update(
                    poll_task, completed=int(poll_done), note=poll_note if poll_done else ""
                )
                finished = (
                    status.finished and done_codes == len(set(codes.values())) and late_done
                    and not member_key and poll_done
                )  # fmt: skip
                if finished:
                    return keys, campaign_id, poll_note
                if time.monotonic() > deadline:
                    raise DemoError(f"jobs still running after {DEADLINE_S:.0f} s")
                time.sleep(0.05)
        finally:
            worker.stop(timeout=5000)

    def _start_poll(self, client: redis.Redis, poll_actor: dramatiq.Actor[Any, Any]) -> str:
        if self.redis_url and client.exists(CURSOR_KEY):
            # A real deployment polls this Redis: the demo must not move its cursor.
            return "skipped: this Redis already has a poll cursor"
        poll_actor.send()
        return f"one poll read the {EMAILS} emails the simulator holds"
