"""``campaign start`` checks its input before it takes the id, ``--dry-run`` writes nothing, and
``campaign discard`` frees the id of a campaign of which nothing was sent (real Redis)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import redis

from producers.campaign import chunk_key
from worker.cli import main
from worker.jobs.idempotency import JobLedger

MAINLAND_RULE = "must be a mainland mobile number (11 digits starting 13-19)"


@pytest.fixture
def cli_env(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("REDIS_URL", redis_url)
    return redis_url


def phone(i: int) -> str:
    return f"137{i:08d}"


def three_columns(path: Path, rows: int) -> Path:
    """The issue's file: ``phone,name,city`` and one row per person."""
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["phone", "name", "city"])
        writer.writerows([phone(i), f"Person {i}", "Hangzhou"] for i in range(rows))
    return path


def start(campaign_id: str, path: Path, *extra: str) -> list[str]:
    return ["campaign", "start", campaign_id, str(path), "--template-id", "12345", *extra]


def one_line(text: str) -> str:
    """The one error line in stderr (the progress bar may be drawn there as well)."""
    lines = [line for line in text.splitlines() if "error" in line]
    assert len(lines) == 1 and lines[0].startswith("sendcloud-jobs: error: "), lines
    return lines[0]


def test_several_columns_without_column_are_refused_and_the_id_stays_free(
    cli_env: str, redis_client: redis.Redis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = three_columns(tmp_path / "numbers.csv", 5010)
    assert main(start("x4", source)) == 2
    error = one_line(capsys.readouterr().err)
    assert "line 1 has 3 CSV columns ('phone', 'name', 'city')" in error
    assert "--column NAME or --column NUMBER" in error
    assert redis_client.keys() == []

    assert main(start("x4", source, "--column", "phone")) == 0
    out = capsys.readouterr().out
    assert "campaign x4: 5010 entries, 5010 valid, 0 invalid, 0 duplicates; 3 chunks" in out
    assert "(resumed)" not in out


def test_a_column_without_a_valid_number_is_refused_and_the_right_one_then_works(
    cli_env: str, redis_client: redis.Redis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = three_columns(tmp_path / "numbers.csv", 5010)
    assert main(start("x4", source, "--column", "city")) == 2
    error = one_line(capsys.readouterr().err)
    assert (f"phones: no valid number in 5010 entries (first bad entry: 'Hangzhou' on line 2: "
            f"{MAINLAND_RULE}); is --column right? The header row's columns: phone, name, "
            "city. Nothing was started; the id is still free.") in error
    # By number, the header row is an entry too (it is no header: the next cell is no number).
    assert main(start("x4", source, "--column", "2")) == 2
    assert "no valid number in 5011 entries (first bad entry: 'name' on line 1" in (
        one_line(capsys.readouterr().err))
    assert redis_client.keys() == []

    assert main(start("x4", source, "--column", "1")) == 0
    out = capsys.readouterr().out
    assert "line 1 ('phone') is a header row: skipped, not counted" in out
    assert "campaign x4: 5010 entries, 5010 valid, 0 invalid" in out


def test_a_header_line_is_skipped_and_said_so(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "numbers.txt"
    source.write_text("手机号\n" + "\n".join(phone(i) for i in range(3)) + "\nbad\n")
    assert main(start("h", source)) == 0
    out = capsys.readouterr().out
    assert "line 1 ('手机号') is a header row: skipped, not counted" in out
    assert "campaign h: 4 entries, 3 valid, 1 invalid" in out
    report = tmp_path / "report.csv"
    assert main(["campaign", "report", "h", "-o", str(report)]) == 0
    rows = list(csv.DictReader(report.open()))
    assert [(r["phone"], r["outcome"]) for r in rows][-1] == ("bad", "invalid")
    assert rows[-1]["message"] == f"input entry 4: {MAINLAND_RULE}"
    assert len(rows) == 4


def test_dry_run_counts_and_samples_and_writes_nothing(
    cli_env: str, redis_client: redis.Redis, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = tmp_path / "numbers.txt"
    numbers = [phone(i) for i in range(2500)]
    source.write_text("\n".join(["mobile", *numbers[:3], "", "12345", numbers[0], *numbers[3:],
                                 "abc"]) + "\n")
    dry = [*start("d", source), "--dry-run"]
    assert main(dry) == 0
    out = capsys.readouterr().out
    assert "line 1 ('mobile') is a header row: skipped, not counted" in out
    assert ("dry run of campaign d (nothing written): 2503 entries, 2500 valid, 2 invalid, "
            "1 duplicates; 2 chunks") in out
    assert f"first valid numbers: {', '.join(numbers[:5])}" in out
    assert f"  line 6: '12345': {MAINLAND_RULE}" in out
    assert f"  line 2505: 'abc': {MAINLAND_RULE}" in out
    assert redis_client.keys() == []

    # Not even a connection: it runs with Redis unreachable.
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    assert main(dry) == 0
    capsys.readouterr()
    junk = tmp_path / "junk.txt"
    junk.write_text("12345\nabc\n")
    assert main([*start("d", junk), "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert "2 entries, 0 valid, 2 invalid" in captured.out
    assert "no valid number in 2 entries (first bad entry: '12345' on line 1" in captured.err
    assert redis_client.keys() == []


def test_discard_frees_the_id_of_an_unsent_campaign_and_refuses_a_claimed_one(
    cli_env: str, redis_client: redis.Redis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("\n".join(phone(i) for i in range(2100)) + "\n")
    assert main(start("d1", wrong)) == 0
    assert main(["campaign", "discard", "d1"]) == 0
    assert ("campaign d1 discarded: 2 chunks, nothing sent (2 queued jobs will end unsent); "
            "the id can be started again") in capsys.readouterr().out
    right = tmp_path / "right.txt"
    right.write_text("\n".join(phone(5000 + i) for i in range(10)) + "\n")
    assert main(start("d1", right)) == 0
    out = capsys.readouterr().out
    assert "10 valid" in out and "1 enqueued now" in out and "(resumed)" not in out

    # A worker has claimed the campaign's chunk: it may be sending, so the discard is refused.
    JobLedger(redis_client, lease=10, ttl=3600, maxlen=1000).claim(
        chunk_key("d1", 0, 1), "a-worker", kind="sms")
    assert main(["campaign", "discard", "d1"]) == 2
    assert "cannot be discarded: chunk 0 was claimed by a worker" in (
        one_line(capsys.readouterr().err))
    assert main(["campaign", "status", "d1"]) == 0
    assert main(["campaign", "discard", "nope"]) == 2
    assert "names no known campaign" in capsys.readouterr().err
