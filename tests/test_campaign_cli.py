"""``sendcloud-jobs campaign``: start from a file, resume, status, report, cancel, user errors."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import pytest

from producers.campaign_input import NumberSource, read_numbers
from tests.jobs_harness import TEMPLATE_ID, make_stack
from worker.cli import main


@pytest.fixture
def cli_env(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("REDIS_URL", redis_url)
    return redis_url


def write_csv(path: Path, phones: list[str]) -> Path:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["name", "mobile"])
        writer.writerows([f"user {i}", phone] for i, phone in enumerate(phones))
    return path


def test_start_resume_status_report_and_cancel_from_a_csv(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    phones = [f"137{i:08d}" for i in range(4100)] + ["555-0100", "13700000001"]
    source = write_csv(tmp_path / "list.csv", phones)
    start = ["campaign", "start", "autumn", str(source), "--template-id", "9",
             "--column", "mobile", "--var", "season=autumn"]

    assert main(start) == 0
    assert "4102 entries, 4100 valid, 1 invalid, 1 duplicates; 3 chunks, 3 enqueued now" in (
        capsys.readouterr().out)
    assert main(start) == 0  # pressed again: a resume, nothing enqueued twice
    assert "0 enqueued now, 3 already enqueued (resumed)" in capsys.readouterr().out

    assert main(["campaign", "status", "autumn"]) == 0
    status = capsys.readouterr().out
    assert "campaign autumn: enqueued" in status and "4100" in status

    report = tmp_path / "report.csv"
    assert main(["campaign", "report", "autumn", "-o", str(report)]) == 0
    rows = list(csv.DictReader(report.open()))
    assert Counter(r["outcome"] for r in rows) == {"pending": 4100, "invalid": 1}
    assert [r["phone"] for r in rows if r["outcome"] == "invalid"] == ["555-0100"]

    assert main(["campaign", "cancel", "autumn"]) == 0
    out = capsys.readouterr().out
    assert "cancelling" in out
    assert "campaign autumn: cancel requested; chunks not yet sent end as cancelled" in out
    assert main(["campaign", "cancel", "autumn"]) == 0
    assert "a cancel was already requested; 4100 numbers still pending" in (
        capsys.readouterr().out)


def test_user_mistakes_are_one_line_and_status_2(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_csv(tmp_path / "list.csv", [f"137{i:08d}" for i in range(10)])
    base = ["campaign", "start", "c1", str(source), "--template-id", "9"]
    assert main([*base, "--column", "phone"]) == 2
    assert "no column 'phone' in the header row ['name', 'mobile']" in capsys.readouterr().err
    assert main([*base, "--column", "2", "--skip-header"]) == 0
    capsys.readouterr()
    assert main([*base, "--column", "2", "--skip-header", "--var", "a=b"]) == 2
    assert "campaign_id 'c1' was already started with different input" in (
        capsys.readouterr().err)
    assert main(["campaign", "status", "nope"]) == 2
    assert "names no known campaign" in capsys.readouterr().err
    assert main(["campaign", "start", "c2", str(tmp_path / "missing.txt"),
                 "--template-id", "9"]) == 2
    assert "FILE: cannot read" in capsys.readouterr().err


def test_status_watch_returns_once_the_campaign_has_finished(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "few.txt"
    source.write_text("12345\n13700000001\nnot a number\n")
    assert main(["campaign", "start", "few", str(source), "--template-id", str(TEMPLATE_ID)]) == 0
    stack = make_stack(cli_env)
    try:
        with stack.running(threads=1):
            assert main(["campaign", "status", "few", "--watch", "--interval", "0.01"]) == 0
    finally:
        stack.broker.close()
    assert "campaign few: finished" in capsys.readouterr().out
    assert main(["campaign", "cancel", "few"]) == 0  # too late: it says so
    assert "campaign few had already finished: nothing left to cancel (1 numbers accepted" in (
        capsys.readouterr().out)
    report = tmp_path / "report.csv"
    assert main(["campaign", "report", "few", "-o", str(report)]) == 0
    rows = list(csv.DictReader(report.open()))
    assert [(r["phone"], r["outcome"]) for r in rows] == [
        ("13700000001", "sent"), ("12345", "invalid"), ("not a number", "invalid")]


def test_read_numbers_lines_and_columns() -> None:
    text = "\ufeff13700000001\n\n  13700000002 \r\nbad\n"
    seen: list[int] = []
    numbers = list(read_numbers(io.BytesIO(text.encode()), None, False, seen.append))
    assert numbers == ["13700000001", "13700000002", "bad"]
    assert sum(seen) == len(text.encode())
    table = "a,b\n1,13700000003\n2,\n3\n"
    assert list(read_numbers(io.BytesIO(table.encode()), "b", False, seen.append)) == [
        "13700000003", "", ""]
    assert list(read_numbers(io.BytesIO(table.encode()), "1", True, seen.append)) == [
        "1", "2", "3"]


def test_a_first_line_with_no_digit_before_a_number_is_a_header() -> None:
    text = "mobile\n\n13700000001\nbad\n\n13700000002\n"
    source = NumberSource(io.BytesIO(text.encode()), None, False, lambda n: None)
    assert list(source) == ["13700000001", "bad", "13700000002"]
    assert source.skipped_header == (1, "mobile")
    assert [source.line_of(i) for i in (1, 2, 3)] == [3, 4, 6]
    # Not a header: a first entry with digits (a mistyped number), or one not followed by a
    # number; both stay entries, refused as invalid by the campaign.
    for text, entries in (("1370000000\n13700000001\n", ["1370000000", "13700000001"]),
                          ("mobile\nnone\n", ["mobile", "none"])):
        source = NumberSource(io.BytesIO(text.encode()), None, False, lambda n: None)
        assert (list(source), source.skipped_header) == (entries, None)
    table = "phone,name\n13700000001,a\n"
    source = NumberSource(io.BytesIO(table.encode()), "1", False, lambda n: None)
    assert (list(source), source.skipped_header) == (["13700000001"], (1, "phone"))
