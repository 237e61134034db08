"""Run every benchmark, each in its own process, then print one table of all their figures.

Usage: ``.venv/bin/python -m bench.run [--quick] [--only overhead,memory] [--results-dir DIR]``

Default sizes are the ones documented in bench/README.md; ``--quick`` runs each at a size that
finishes in about a minute, to check they work rather than to measure. Each benchmark writes
``<results-dir>/<name>.json``; this runner reads them back, so a figure in the table is exactly
what the JSON holds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import REPO, RESULTS_DIR, print_table


@dataclass(frozen=True)
class Bench:
    name: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    #: How the benchmark is told where its JSON goes: "--results-dir" (a directory) or "--out".
    output_option: str = "--results-dir"

    def argv(self, quick: bool, results_dir: Path) -> list[str]:
        where = str(results_dir if self.output_option == "--results-dir"
                    else results_dir / f"{self.name}.json")
        sizes = self.quick if quick else self.full
        return [sys.executable, "-m", f"bench.{self.name}", *sizes, self.output_option, where]


BENCHES = (
    Bench("overhead", ("--n", "5000"), ("--n", "300", "--profile-n", "100")),
    Bench("campaign", ("--n", "1000000"), ("--n", "20000")),
    Bench("isolation", ("--n", "1000000"), ("--n", "20000", "--codes", "30")),
    Bench("poller", (), ("--records", "5000"), output_option="--out"),
    Bench("memory", ("--n", "100000"), ("--n", "2000")),
    Bench("simulator", ("--n", "2000000"), ("--n", "40000")),
    Bench("enqueue", ("--n", "20000"), ("--n", "2000", "--rounds", "1")),
    Bench("hooks", (), ("--n", "8000", "--duration", "1", "--rounds", "1", "--rate-duration", "2")),
    Bench("scale_out", ("--n", "200000"),
          ("--n", "4000", "--groups", "1,2", "--threads", "1", "--capacity", "2",
           "--latency", "0.05")),
)


def _numbers(prefix: str, value: Any, depth: int = 0) -> Iterator[tuple[str, Any]]:
    if isinstance(value, bool) or value is None or isinstance(value, int | float):
        yield prefix, value
    elif isinstance(value, Mapping) and depth < 2:
        for key, inner in value.items():
            yield from _numbers(f"{prefix}.{key}" if prefix else str(key), inner, depth + 1)


def rows_of(name: str, document: Mapping[str, Any]) -> list[list[Any]]:
    """Table rows of one result: its figures with their targets, or any numbers it holds."""
    if isinstance(document.get("figures"), Mapping):
        targets = document.get("targets") or {}
        rows = []
        for figure, value in document["figures"].items():
            target = targets.get(figure) or {}
            met = target.get("met")
            rows.append([name, figure, value, target.get("target", ""),
                         "" if met is None else ("yes" if met else "NO")])
        return rows
    return [[name, figure, value, "", ""] for figure, value in _numbers("", document)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check, not measure")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    wanted = {n.strip() for n in args.only.split(",") if n.strip()}
    unknown = wanted - {b.name for b in BENCHES}
    if unknown:
        parser.error(f"--only: unknown benchmark(s) {', '.join(sorted(unknown))}")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    rows: list[list[Any]] = []
    failed = 0
    for bench in BENCHES:
        if wanted and bench.name not in wanted:
            continue
        if not (REPO / "bench" / f"{bench.name}.py").exists():
            rows.append([bench.name, "(not present)", "", "", ""])
            continue
        command = bench.argv(args.quick, args.results_dir)
        path = args.results_dir / f"{bench.name}.json"
        path.unlink(missing_ok=True)  # a stale result must not pass for this run's
        print(f"$ {' '.join(command[1:])}", flush=True)
        started = time.monotonic()
        code = subprocess.call(command, cwd=REPO)
        seconds = round(time.monotonic() - started, 1)
        if code != 0 or not path.exists():
            failed += 1
            rows.append([bench.name, f"FAILED (exit {code})", "", "", ""])
            continue
        rows.extend(rows_of(bench.name, json.loads(path.read_text())))
        rows.append([bench.name, "bench_seconds", seconds, "", ""])
    print()
    print_table("all benchmarks", rows, header=("bench", "figure", "value", "target", "met"))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
