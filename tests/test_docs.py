"""What the docs list matches the code: every outcome in both the README and the architecture."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

from producers.contract import Outcome

ROOT = Path(__file__).resolve().parent.parent
EXTRA = ("campaign_finished", "paused")  # the outcomes of completion and alert records


def backticked(text: str) -> set[str]:
    return set(re.findall(r"`([a-z_]+)`", text))


def test_every_outcome_is_documented_in_readme_and_architecture() -> None:
    outcomes = {*get_args(Outcome), *EXTRA}
    readme = (ROOT / "README.md").read_text()
    results = readme[readme.index("## Reading results") : readme.index("## Exactly once")]
    architecture = (ROOT / "docs/architecture.md").read_text()
    table = architecture[architecture.index("| stream | kinds | outcomes |") :]
    table = table[: table.index("\n\n")]
    assert outcomes - backticked(results) == set()
    assert outcomes - backticked(table) == set()
