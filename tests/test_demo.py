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


def test_demo_uses_redis_url_when_set(redis_url: str, redis_client: redis.Redis) -> None:
    env = {**os.environ, "REDIS_URL": redis_url, "COLUMNS": "120"}

    proc = run_demo(env)

    assert proc.returncode == 0, proc.stderr
    assert redis_url in proc.stdout
    kinds = {fields[b"kind"] for _, fields in redis_client.xrange(SMS_RESULTS_STREAM)}
    assert kinds == {b"campaign", b"code", b"sms", b"voice_code"}
