"""The README's first command, run the way a new user runs it: no Redis server, no account."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import redis

from producers.contract import SMS_RESULTS_STREAM

CLI = str(Path(sys.executable).parent / "sendcloud-jobs")


def run_demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "demo"], env=env, capture_output=True, text=True, timeout=120, cwd="/"
    )


def rows(stdout: str) -> dict[tuple[str, str, str], int]:
    """(stream, kind, outcome) -> records, from the summary table."""
    found: dict[tuple[str, str, str], int] = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]
        if len(cells) == 4 and cells[3].isdigit():
            found[(cells[0], cells[1], cells[2])] = int(cells[3])
    return found


def test_demo_runs_without_a_redis_server() -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and k != "COLUMNS"}
    env["COLUMNS"] = "120"

    proc = run_demo(env)

    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    out = proc.stdout
    assert rows(out) == {
        ("sms", "campaign", "campaign_finished"): 1,
        ("sms", "code", "expired"): 1,
        ("sms", "code", "sent"): 2,
        ("sms", "sms", "duplicate"): 1,
        ("sms", "voice_code", "sent"): 1,
        ("members", "members_add", "done"): 1,
        ("members", "members_update", "done"): 1,
        ("members", "members_delete", "done"): 1,
        ("email_status", "status", "delivered"): 20,
        ("email_status", "status", "invalid"): 3,
        ("email_status", "status", "requested"): 7,
    }
    assert "44 entries: 40 valid, 2 invalid, 2 duplicates; 40 accepted" in out
    assert "the simulator delivered 43 SMS = 40 campaign numbers + 3 codes" in out
    assert "retry reused its sendRequestId" in out
    assert "embedded (fakeredis, in memory)" in out


def test_demo_never_uses_redis_url(redis_url: str, redis_client: redis.Redis) -> None:
    """With a deployment's settings sourced, the demo still runs embedded: its jobs must never
    reach queues that live workers serve."""
    env = {**os.environ, "REDIS_URL": redis_url, "COLUMNS": "120"}

    proc = run_demo(env)

    assert proc.returncode == 0, proc.stderr
    assert "embedded (fakeredis, in memory)" in proc.stdout
    assert redis_client.dbsize() == 0


def test_demo_on_an_explicit_redis_leaves_nothing_behind(
    redis_url: str, redis_client: redis.Redis
) -> None:
    env = {**os.environ, "COLUMNS": "120"}
    env.pop("REDIS_URL", None)
    watcher = redis_client.pubsub()  # sees every key the demo writes, via keyspace events
    redis_client.config_set("notify-keyspace-events", "KEA")
    watcher.psubscribe("__keyspace@0__:*")

    proc = subprocess.run(
        [CLI, "demo", "--redis-url", redis_url], env=env, capture_output=True, text=True,
        timeout=120, cwd="/",
    )  # fmt: skip

    assert proc.returncode == 0, proc.stderr
    assert rows(proc.stdout)[("sms", "code", "sent")] == 2
    assert "removed the" in proc.stdout
    touched = set()
    while (event := watcher.get_message(timeout=0.5)) is not None:
        if event["type"] == "pmessage":
            touched.add(event["channel"].decode().split(":", 1)[1])
    watcher.close()
    redis_client.config_set("notify-keyspace-events", "")
    queues = {k for k in touched if k.startswith("dramatiq:")}
    assert queues == set(), f"the demo used the workers' queues: {sorted(queues)}"
    assert any(k.startswith("sendcloud-demo-") for k in touched)
    assert redis_client.dbsize() == 0


def test_demo_refuses_a_database_with_sendcloud_data(
    redis_url: str, redis_client: redis.Redis
) -> None:
    redis_client.xadd(SMS_RESULTS_STREAM, {"kind": "sms", "outcome": "sent"})
    env = {**os.environ, "COLUMNS": "120"}

    proc = subprocess.run(
        [CLI, "demo", "--redis-url", redis_url], env=env, capture_output=True, text=True,
        timeout=60, cwd="/",
    )  # fmt: skip

    assert proc.returncode == 1
    assert "holds sendcloud-jobs data (1 keys)" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert redis_client.xlen(SMS_RESULTS_STREAM) == 1
