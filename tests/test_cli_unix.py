"""The CLI as a Unix tool: closed pipes, exit statuses, one-line errors, help without markup."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from producers.contract import SMS_RESULTS_STREAM
from worker.cli import EXIT_NEEDS_REVIEW, EXIT_NOT_SENT, EXIT_OK, build_parser, walk
from worker.cli.enqueue import _wait

CLI = str(Path(sys.executable).parent / "sendcloud-jobs")


def run(env: dict[str, str], command: str) -> subprocess.CompletedProcess[str]:
    """``command`` through a shell, so pipes behave as in a terminal."""
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], env={**os.environ, **env},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_closed_pipe_ends_quietly(redis_url: str, redis_client: redis.Redis) -> None:
    for i in range(2000):
        redis_client.xadd(SMS_RESULTS_STREAM, {"kind": "sms", "outcome": "sent", "key": f"k{i}"})

    proc = run({"REDIS_URL": redis_url}, f"{CLI} results tail -n 2000 | head -1")

    assert proc.stdout.count("\n") == 1
    assert proc.stderr == ""
    assert proc.returncode == 141  # pipefail: the status of the CLI, 128 + SIGPIPE


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("REDIS_URL", "notaurl", "REDIS_URL: must start with redis://"),
        ("LOG_LEVEL", "verbose", "LOG_LEVEL: must be one of DEBUG, INFO"),
        ("SENDCLOUD_RESULTS_MAXLEN", "lots", "SENDCLOUD_RESULTS_MAXLEN: must be an integer"),
    ],
)
def test_a_bad_setting_is_one_line(variable: str, value: str, message: str) -> None:
    proc = run({variable: value}, f"{CLI} results tail")

    assert proc.returncode == 2
    assert proc.stderr.startswith(f"sendcloud-jobs: error: {message}")
    assert proc.stderr.count("\n") == 1


def test_version() -> None:
    proc = run({}, f"{CLI} --version")

    assert proc.returncode == 0
    assert proc.stdout.strip() == "sendcloud-jobs 0.1.0"


def parsers() -> list[argparse.ArgumentParser]:
    return list(walk(build_parser()))


def test_help_text_has_no_markup_and_every_option_explains_itself() -> None:
    found = parsers()
    assert len(found) > 20
    for parser in found:
        text = parser.format_help()
        assert "``" not in text and ":func:" not in text and ":mod:" not in text, parser.prog
        for action in parser._actions:
            if action.option_strings and action.help is None:
                pytest.fail(f"{parser.prog} {'/'.join(action.option_strings)} has no help")


class FakeProducer:
    def __init__(self, result: dict[str, Any] | None) -> None:
        self.result = result

    def get_result(self, key: str) -> dict[str, Any] | None:
        return self.result

    def get_record(self, key: str) -> dict[str, Any]:
        return {"state": "queued"}


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        ("sent", EXIT_OK), ("partial", EXIT_OK), ("duplicate", EXIT_OK), ("done", EXIT_OK),
        ("failed", EXIT_NOT_SENT), ("expired", EXIT_NOT_SENT), ("cancelled", EXIT_NOT_SENT),
        ("needs_review", EXIT_NEEDS_REVIEW), ("something new", EXIT_NEEDS_REVIEW),
    ],
)  # fmt: skip
def test_wait_exits_by_outcome(outcome: str, status: int) -> None:
    assert _wait(FakeProducer({"outcome": outcome}), "k", 1) == status


def test_wait_without_a_result_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert _wait(FakeProducer(None), "k", 0) == 1
    assert "no result for k after 0 s (state: queued)" in capsys.readouterr().err


def test_tail_of_a_stream_that_does_not_exist_says_so(redis_url: str) -> None:
    for stream in ("nosuch", "sms"):
        proc = run({"REDIS_URL": redis_url}, f"{CLI} results tail --stream {stream}")

        assert proc.returncode == 2
        assert proc.stderr.startswith("sendcloud-jobs: error: --stream: no stream ")
        assert "check REDIS_URL" in proc.stderr
