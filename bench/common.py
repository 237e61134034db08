"""What the benchmarks and the chaos suite share: Redis, simulator, worker processes, output.

* :func:`throwaway_redis`: a redis-server of our own on a free port, gone afterwards.
* :class:`SimHost`: the SendCloud simulator served over real HTTP from a child process, so its
  CPU never competes with the measuring process for the GIL; the parent reads its ledger through
  a pipe (cheap even with a million entries) and drives faults through the admin API.
* :class:`WorkerGroup`: one Procfile entry (``dramatiq worker.app ...``) run as a process group,
  with SIGKILL/SIGTERM of the whole group, restart, readiness and the worker children's RSS.
* :func:`write_result` / :func:`print_table`: ``bench/results/<name>.json`` and a short table.

Every figure a benchmark reports is a ratio or comparison against a baseline measured in the same
run: absolute times on a 2-core machine shared with Redis and the simulator are noisy.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import redis

from producers.replies import reply_text
from tests.redis_server import free_port, start_redis_server

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
PROCFILE = REPO / "Procfile"
NAMESPACE = "dramatiq"
TEMPLATE_ID = 7001

#: The simulator's demo credentials; workers get them as their SendCloud credentials.
SIM_CREDENTIALS = {
    "SENDCLOUD_SMS_USER": "sim_sms_user",
    "SENDCLOUD_SMS_KEY": "sim-sms-key-0000",
    "SENDCLOUD_API_USER": "sim_api_user",
    "SENDCLOUD_API_KEY": "sim-api-key-0000",
}


def mainland(i: int) -> str:
    """The i-th of a range of valid, distinct mainland mobile numbers (i < 10**9)."""
    return f"13{i:09d}"


def wait_for(predicate: Callable[[], bool], deadline: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds (True) or ``deadline`` seconds pass (False)."""
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(interval)
    return True


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


# -- Redis ---------------------------------------------------------------------------------------


@contextmanager
def throwaway_redis() -> Iterator[str]:
    """The URL of a fresh redis-server, stopped (and its files removed) on exit."""
    server = start_redis_server()
    if server is None:
        raise RuntimeError("redis-server is not installed; the benchmarks need a real Redis")
    try:
        yield server.url
    finally:
        server.stop()


def broker_backlog(client: redis.Redis, namespace: str = NAMESPACE) -> dict[str, int]:
    """Messages still held by the broker: queued, delayed (.DQ) or unacknowledged, by key.

    Dead-lettered messages (.XQ) are not backlog and are left out.
    """
    backlog: dict[str, int] = {}
    for raw in client.scan_iter(match=f"{namespace}:*", count=1000):
        key = reply_text(raw)
        if key.endswith(".msgs") or ".XQ" in key or key.endswith("__heartbeats__"):
            continue
        kind = reply_text(client.type(raw))
        size = {"list": client.llen, "set": client.scard, "zset": client.zcard}.get(kind)
        if size is not None and (count := int(size(raw))):
            backlog[key] = count
    return backlog


# -- the simulator in a child process ------------------------------------------------------------


def _sim_main(conn: Connection, latency: dict[str, float], templates: list[int], seed: int
              ) -> None:
    """Child process: serve a simulator over HTTP, answer ledger queries on ``conn``."""
    import structlog

    from simulator import Simulator
    from simulator.server import serve_in_thread

    # Unconfigured structlog prints every request at debug level: noise, and simulator CPU.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    sim = Simulator(seed=seed)
    for template_id in templates:
        sim.seed_template(template_id)
    for endpoint, seconds in latency.items():
        sim.faults.set(endpoint, latency=seconds)
    server = serve_in_thread(sim)
    conn.send(server.url)
    try:
        while True:
            command, kind = conn.recv()
            if command == "stop":
                break
            if command == "count":
                conn.send(sim.ledger.count(kind))
            elif command == "spread":
                # Numbers delivered, and the most deliveries of one number, counted here: at
                # ten million entries shipping them through the pipe would be the bench.
                counts = sim.ledger.count_by_phone()
                conn.send((len(counts), max(counts.values(), default=0)))
            else:
                entries = [e for e in sim.ledger.entries() if kind is None or e.kind == kind]
                conn.send([(e.kind, e.phone, e.send_request_id, e.at) for e in entries])
    finally:
        server.stop()


LedgerRow = tuple[str, str, str | None, float]  # kind, phone, sendRequestId, at (epoch s)


class SimHost:
    """The simulator over HTTP in a child process.

    ``latency``: seconds of latency per endpoint path ("*" for all). ``admin`` is a
    :class:`simulator.admin.SimulatorAdmin` for faults, templates and state.
    """

    def __init__(self, *, latency: Mapping[str, float] | None = None,
                 templates: Sequence[int] = (TEMPLATE_ID,), seed: int = 0) -> None:
        from simulator.admin import SimulatorAdmin

        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_sim_main, args=(child, dict(latency or {}), list(templates), seed),
            name="sendcloud-simulator", daemon=True,
        )
        self._process.start()
        child.close()
        if not self._conn.poll(30):
            self.close()
            raise RuntimeError("the simulator process did not start within 30 s")
        self.url: str = self._conn.recv()
        self.admin = SimulatorAdmin(self.url, timeout=60)

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def count(self, kind: str | None = None) -> int:
        """Ledger entries (accepted deliveries), of one kind ("sms", "code", "voice") or all."""
        self._conn.send(("count", kind))
        return int(self._conn.recv())

    def spread(self) -> tuple[int, int]:
        """(numbers delivered to, the most deliveries any one number got)."""
        self._conn.send(("spread", None))
        numbers, most = self._conn.recv()
        return int(numbers), int(most)

    def entries(self, kind: str | None = None) -> list[LedgerRow]:
        self._conn.send(("entries", kind))
        rows: list[LedgerRow] = self._conn.recv()
        return rows

    def close(self) -> None:
        if self._process.is_alive():
            with suppress(OSError):
                self._conn.send(("stop", None))
            self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=10)
        if hasattr(self, "admin"):
            self.admin.close()
        self._conn.close()

    def __enter__(self) -> SimHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- worker processes ----------------------------------------------------------------------------


def procfile_entries(path: Path = PROCFILE) -> dict[str, str]:
    entries: dict[str, str] = {}
    for line in path.read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not name.lstrip().startswith("#"):
            entries[name.strip()] = command.strip()
    return entries


def _set_option(argv: list[str], option: str, value: str) -> None:
    if option in argv:
        argv[argv.index(option) + 1] = value
    else:
        argv[1:1] = [option, value]


def worker_command(entry: str, *, processes: int | None = None, threads: int | None = None,
                   module: str | None = None, queues: Sequence[str] | None = None) -> list[str]:
    """The Procfile entry's argv, run by this interpreter's dramatiq, with optional overrides.

    ``module`` swaps the app module (the bare baseline runs the same command on its own app).
    """
    argv = shlex.split(procfile_entries()[entry])
    # The Procfile gives each entry its own metrics port and directory (`env NAME=value ...`);
    # every group started here gets its own through its environment instead.
    if argv and argv[0] == "env":
        argv = argv[1:]
        while argv and "=" in argv[0] and not argv[0].startswith("-"):
            argv = argv[1:]
    if not argv or argv[0] != "dramatiq":
        raise ValueError(f"Procfile entry {entry!r} does not run dramatiq: {argv[:1]!r}")
    if module is not None:
        argv[1] = module
    if processes is not None:
        _set_option(argv, "--processes", str(processes))
    if threads is not None:
        _set_option(argv, "--threads", str(threads))
    if queues is not None:
        start = argv.index("--queues") + 1
        end = start
        while end < len(argv) and not argv[end].startswith("-"):
            end += 1
        argv[start:end] = list(queues)
    return [sys.executable, "-m", "dramatiq", *argv[1:]]


def option_value(argv: Sequence[str], option: str, default: int) -> int:
    return int(argv[list(argv).index(option) + 1]) if option in argv else default


def worker_env(redis_url: str, sim_url: str, **settings: str) -> dict[str, str]:
    """A worker's environment: this machine's, minus any SENDCLOUD_* of the caller, plus ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDCLOUD_")}
    env.update(SIM_CREDENTIALS)
    env.update({
        "REDIS_URL": redis_url,
        "SENDCLOUD_BASE_URL": sim_url,
        # Metrics stay on, as deployed, on a port and directory of this group's own.
        "SENDCLOUD_METRICS_PORT": str(free_port()),
        "dramatiq_prom_db": tempfile.mkdtemp(prefix="sendcloud-bench-prom-"),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(settings)
    return env


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return sorted(int(p) for p in text.split())


def _status_field(pid: int, name: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (all its threads) so far; 0.0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    # After the command name: state is field 3, utime 14 and stime 15 (1-based, man 5 proc).
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def system_cpu_seconds(pid: int) -> float:
    """The system (kernel) part of :func:`cpu_seconds`."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return int(fields[12]) / _CLOCK_TICKS


def context_switches(pid: int) -> int:
    """Context switches (voluntary and not) of all of ``pid``'s threads so far; a thread that
    waits for the GIL or a socket gives the CPU up once each time."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            for line in status.read_text().splitlines():
                if line.endswith("ctxt_switches:") or "ctxt_switches:" in line:
                    total += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total


def rss_kib(pid: int) -> int | None:
    """VmRSS of ``pid`` in KiB, or None once it is gone."""
    return _status_field(pid, "VmRSS")


@dataclass
class WorkerGroup:
    """One Procfile entry as a process group (the dramatiq master, its workers and forks)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: list[float] = field(default_factory=list)

    @property
    def processes(self) -> int:
        return option_value(self.argv, "--processes", os.cpu_count() or 1)

    @property
    def threads(self) -> int:
        return option_value(self.argv, "--threads", 8)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts.append(time.time())

    def worker_pids(self) -> list[int]:
        """The dramatiq worker processes: the master's children that run worker threads.

        The metrics exposition fork is a child too, but single-threaded.
        """
        if self.process is None:
            return []
        pids = _children(self.process.pid)
        return [p for p in pids if (_status_field(p, "Threads") or 0) > self.threads][
            : self.processes
        ]

    def wait_ready(
        self, client: redis.Redis, deadline: float = 60.0,
        consumers: Callable[[], int] | None = None,
    ) -> None:
        """Until every worker process of this start has polled Redis (its heartbeat is fresh),
        or, on RabbitMQ, until ``consumers()`` (of the group's queue) counts one per process."""
        since_ms = int(self.starts[-1] * 1000)
        heartbeats = f"{NAMESPACE}:__heartbeats__"

        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; "
                                   f"see {self.log_path}:\n{self.log_tail()}")
            if consumers is not None:
                fresh = consumers()
            else:
                fresh = client.zcount(heartbeats, since_ms, "+inf")
            return len(self.worker_pids()) >= self.processes and fresh >= self.processes

        if not wait_for(ready, deadline, interval=0.1):
            raise RuntimeError(f"{self.name} not ready within {deadline} s:\n{self.log_tail()}")

    def signal(self, sig: int) -> None:
        if self.process is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole group, as a crashed machine or OOM-killed container would die."""
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (workers finish their calls in flight), then SIGKILL after ``timeout``."""
        if self.process is None or self.process.poll() is not None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        # Forks (metrics) may outlive the master for a moment; the group goes with it.
        self.signal(signal.SIGKILL)

    def restart(self) -> None:
        self.start()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@contextmanager
def worker_groups(*groups: WorkerGroup) -> Iterator[tuple[WorkerGroup, ...]]:
    """Start the groups; stop every one of them on exit, whatever happened."""
    try:
        for group in groups:
            group.start()
        yield groups
    finally:
        for group in groups:
            group.stop(timeout=15)


@contextmanager
def rabbitmq_vhost(bench: str) -> Iterator[Any]:
    """A RabbitMQ vhost of this run's own (``tests.rabbitmq_server.RabbitVhost``), deleted
    after; ``bench`` exits with one line when the machine's RabbitMQ cannot be used."""
    from tests.rabbitmq_server import create_vhost, unavailable

    why = unavailable()
    if why is not None:
        raise SystemExit(f"{bench} --broker rabbitmq: {why}")
    vhost = create_vhost()
    try:
        yield vhost
    finally:
        vhost.delete()


def drain_seconds(client: redis.Redis, campaign_id: str) -> float:
    """First chunk claimed to the campaign's ``finished_at``, both Redis-clock stamps."""
    from producers.campaign import campaign_key, chunk_key

    meta = campaign_key(campaign_id)
    chunks = int(client.hget(meta, "chunks") or 0)
    with client.pipeline(transaction=False) as pipe:
        for i in range(chunks):
            pipe.hget(f"sendcloud:idem:{chunk_key(campaign_id, i)}", "first_attempt_at")
        first = min(float(t) for t in pipe.execute() if t is not None)
    return float(client.hget(meta, "finished_at") or 0) - first


# -- output --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A figure's target: ``figure op value``, op one of ">=", "<=", "<", ">"."""

    figure: str
    op: str
    value: float

    def met(self, figures: Mapping[str, Any]) -> bool | None:
        actual = figures.get(self.figure)
        if not isinstance(actual, int | float):
            return None
        return {">=": actual >= self.value, "<=": actual <= self.value,
                "<": actual < self.value, ">": actual > self.value}[self.op]

    def text(self) -> str:
        return f"{self.op} {self.value:g}"


def write_result(name: str, params: Mapping[str, Any], figures: Mapping[str, Any],
                 targets: Sequence[Target] = (), details: Mapping[str, Any] | None = None,
                 results_dir: Path = RESULTS_DIR) -> Path:
    """Write ``<results_dir>/<name>.json``; its path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    document = {
        "bench": name,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "params": dict(params),
        "figures": dict(figures),
        "targets": {t.figure: {"target": t.text(), "met": t.met(figures)} for t in targets},
        "details": dict(details or {}),
    }
    path = results_dir / f"{name}.json"
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def print_table(title: str, rows: Sequence[Sequence[Any]],
                header: Sequence[str] = ("figure", "value", "target", "met")) -> None:
    """A short table: rich when the terminal wants it, plain text otherwise."""
    cells = [[_cell(v) for v in row] for row in rows]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is a dependency
        Console = None  # type: ignore[assignment,misc]
    if Console is not None and sys.stdout.isatty():
        table = Table(title=title)
        for name in header:
            table.add_column(name)
        for row in cells:
            table.add_row(*row)
        Console().print(table)
        return
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(header)]
    print(title)
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def figure_rows(figures: Mapping[str, Any], targets: Sequence[Target]) -> list[list[Any]]:
    by_figure = {t.figure: t for t in targets}
    rows: list[list[Any]] = []
    for name, value in figures.items():
        target = by_figure.get(name)
        met = None if target is None else target.met(figures)
        rows.append([name, value, "" if target is None else target.text(),
                     "" if met is None else ("yes" if met else "NO")])
    return rows


def report(name: str, params: Mapping[str, Any], figures: Mapping[str, Any],
           targets: Sequence[Target] = (), details: Mapping[str, Any] | None = None,
           results_dir: Path = RESULTS_DIR) -> Path:
    """Write the JSON and print the table; the JSON's path."""
    path = write_result(name, params, figures, targets, details, results_dir)
    print_table(f"{name} ({path.relative_to(REPO) if path.is_relative_to(REPO) else path})",
                figure_rows(figures, targets))
    return path


def exit_on_sigterm() -> None:
    """SIGTERM raises SystemExit, so ``with``/``finally`` blocks stop workers, Redis and the
    simulator instead of orphaning them."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def common_arguments(parser: Any, *, n: int) -> None:
    exit_on_sigterm()
    parser.add_argument("--n", type=int, default=n, help=f"jobs (default {n})")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR,
                        help="where <name>.json goes (default bench/results)")
    parser.add_argument("--log-dir", type=Path, default=None,
                        help="worker logs (default: a temporary directory)")


def log_dir(requested: Path | None) -> Path:
    return requested if requested is not None else Path(tempfile.mkdtemp(prefix="sendcloud-bench-"))
