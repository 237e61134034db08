"""The benchmarks still run: each at a tiny size, writing well-formed JSON with its figures.

Nothing here is timed; the figures' values are the benchmarks' business, their presence is ours.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from bench import isolation, memory, overhead, scale_out, simulator
from bench.run import rows_of

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None and not Path("/usr/bin/redis-server").exists(),
    reason="the benchmarks need a real redis-server",
)

EXPECTED: dict[str, tuple[Callable[[Sequence[str] | None], int], list[str], set[str]]] = {
    "overhead": (overhead.main, ["--n", "60", "--profile-n", "20"],
                 {"ours_jobs_per_s", "bare_jobs_per_s", "ratio", "ours_worker_cpu_ms_per_job",
                  "ours_script_calls_per_job", "ours_job_fn_redis_cpu_ms"}),
    "isolation": (isolation.main, ["--n", "4000", "--codes", "5", "--interval", "0.02"],
                  {"idle_p50_ms", "idle_p99_ms", "loaded_p50_ms", "loaded_p99_ms",
                   "loaded_pickup_p99_ms", "loaded_send_p99_ms", "campaign_drain_s"}),
    "memory": (memory.main, ["--n", "300", "--sample-every", "0.1"],
               {"rss_at_10pct_mib", "rss_at_50pct_mib", "rss_at_100pct_mib",
                "growth_50_100_pct", "processes"}),
    "simulator": (simulator.main, ["--n", "20000"],
                  {"cpu_ms_per_send_first_10pct", "cpu_ms_per_send_last_10pct",
                   "last_over_first"}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bench_writes_its_figures(name: str, tmp_path: Path) -> None:
    main, argv, figures = EXPECTED[name]
    assert main([*argv, "--results-dir", str(tmp_path), "--log-dir", str(tmp_path / "logs")]) == 0
    document: dict[str, Any] = json.loads((tmp_path / f"{name}.json").read_text())
    assert document["bench"] == name
    assert {"params", "figures", "targets", "details", "machine"} <= set(document)
    assert figures <= set(document["figures"])
    for figure in figures:
        assert isinstance(document["figures"][figure], int | float), figure
    for target in document["targets"].values():
        assert target["met"] in (True, False)
    rows = rows_of(name, document)
    assert {row[1] for row in rows} >= figures


def test_the_enqueue_bench_writes_its_ratio(tmp_path: Path) -> None:
    from bench import enqueue

    assert enqueue.main(["--n", "200", "--rounds", "1", "--results-dir", str(tmp_path)]) == 0
    figures = json.loads((tmp_path / "enqueue.json").read_text())["figures"]
    assert figures["ratio"] > 0 and figures["ours_redis_commands_per_call"] > 0


@pytest.fixture
def wrk_installed() -> None:
    if shutil.which("wrk") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("wrk is not installed; CI installs it (.ci/run)")
        pytest.skip("wrk is not installed (apt-get install wrk)")


def test_the_hooks_bench_writes_its_figures(tmp_path: Path, wrk_installed: None) -> None:
    from bench import hooks

    # More bodies than a second of the fastest run can send: a wrapped wrk repeats tokens.
    argv = ["--n", "30000", "--duration", "1", "--rounds", "1", "--rate", "50",
            "--rate-duration", "1", "--results-dir", str(tmp_path), "--log-dir",
            str(tmp_path / "logs")]  # fmt: skip
    assert hooks.main(argv) == 0
    document = json.loads((tmp_path / "hooks.json").read_text())
    figures = document["figures"]
    assert figures["ratio"] > 0 and figures["ours_hooks_per_s"] > 0
    assert figures["ours_cpu_us_per_hook"] > 0 and figures["ours_p99_ms_at_rate"] > 0
    assert {t["met"] for t in document["targets"].values()} <= {True, False}
    # Every hook ours answered was stored: the bench checks it, and says so in its details.
    for run in document["details"]["rounds"]:
        assert run["ours"]["stored"] >= run["ours"]["requests"] > 0


def test_the_scale_out_bench_sends_every_number_of_every_round_once(tmp_path: Path) -> None:
    argv = ["--n", "4000", "--groups", "1,2", "--threads", "1", "--capacity", "2",
            "--latency", "0.02", "--results-dir", str(tmp_path)]
    assert scale_out.main(argv) == 0
    figures = json.loads((tmp_path / "scale_out.json").read_text())["figures"]
    assert figures["delivered_numbers"] == 8000 and figures["max_deliveries_per_number"] == 1
    for figure in ("numbers_per_s_1", "numbers_per_s_2", "speedup_2", "efficiency_2"):
        assert isinstance(figures[figure], float), figure
