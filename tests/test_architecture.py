"""The map of docs/architecture.md, checked: which folder may import which, and no circles.

Every import statement of the product counts, at module level or inside a function, except
those under ``if TYPE_CHECKING:`` (never executed). ``importlib`` calls are not followed.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("worker", "producers", "simulator")

# Folders under a unit that are units of their own: the web process's API and dashboard import
# the producers and the broker, which its hook receiver must not.
SUB_UNITS = ("worker.web.api", "worker.web.dashboard")

# Each unit and the units it may import; the order is the map's, from the top down.
ALLOWED: dict[str, set[str]] = {
    "worker.cli": {"worker.app", "worker.broker", "worker.jobs", "worker.email_status",
                   "worker.receipts",
                   "worker.runtime", "worker.sendcloud", "worker.metrics", "worker.logs",
                   "worker.settings", "worker.web", "worker.web.api", "worker.web.dashboard",
                   "worker.connections", "producers", "simulator"},
    "worker.app": {"worker.broker", "worker.jobs", "worker.email_status", "worker.runtime",
                   "worker.sendcloud", "worker.metrics", "worker.logs", "worker.connections",
                   "worker.settings"},
    "worker.jobs": {"worker.runtime", "worker.sendcloud", "worker.metrics", "worker.logs",
                    "worker.settings", "producers"},
    "worker.receipts": {"worker.web", "worker.jobs", "worker.email_status", "worker.sendcloud",
                        "worker.metrics", "worker.logs", "worker.settings", "producers"},
    "worker.email_status": {"worker.runtime", "worker.sendcloud", "worker.metrics",
                            "worker.logs", "worker.settings", "producers"},
    # The dashboard also reads the account pause (jobs) and the poller's cursor and gaps
    # (email_status) by the key names those units own.
    "worker.web.dashboard": {"worker.web", "worker.broker", "worker.jobs", "worker.email_status",
                             "worker.metrics", "worker.logs", "worker.connections",
                             "worker.settings", "producers"},
    "worker.web.api": {"worker.web", "worker.broker", "worker.metrics", "worker.logs",
                       "worker.connections", "worker.settings", "producers"},
    "worker.web": {"worker.logs", "worker.connections", "worker.settings"},
    "worker.broker": {"worker.metrics", "worker.logs", "worker.settings", "producers"},
    "worker.runtime": {"worker.sendcloud", "worker.settings"},
    "worker.sendcloud": {"worker.metrics", "worker.settings"},
    "worker.metrics": {"worker.connections", "worker.settings", "producers"},
    "worker.logs": {"worker.settings"},
    "worker.connections": {"worker.settings", "producers"},
    "worker.settings": {"producers"},
    "producers": set(),
    "simulator": set(),
}


def unit_of(module: str) -> str:
    for sub_unit in SUB_UNITS:
        if module == sub_unit or module.startswith(sub_unit + "."):
            return sub_unit
    parts = module.split(".")
    if parts[0] != "worker":
        return parts[0]
    return ".".join(parts[:2]) if len(parts) > 1 else "worker"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def _skip_type_checking(tree: ast.AST) -> Iterator[ast.AST]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in [child, *_skip_type_checking(child)])
            continue
        yield node
        yield from _skip_type_checking(node)


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project's modules that ``path`` imports (``from a import b``: ``a.b`` if a module)."""
    found: set[str] = set()
    for node in _skip_type_checking(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [
                f"{node.module}.{alias.name}"
                if f"{node.module}.{alias.name}" in modules else node.module
                for alias in node.names
            ]
        else:
            continue
        found.update(name for name in names if name.split(".")[0] in PACKAGES)
    return found


def graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(path, modules) & set(modules) for name, path in modules.items()}


def test_every_unit_is_on_the_map():
    units = {unit_of(module) for module in all_modules()} - {"worker"}
    assert units <= set(ALLOWED), f"add {sorted(units - set(ALLOWED))} to the map"


def test_imports_point_the_way_the_map_says():
    wrong = sorted(
        f"{source} imports {target}"
        for source, targets in graph().items()
        for target in targets
        if unit_of(source) != unit_of(target)
        and unit_of(source) != "worker"
        and unit_of(target) not in ALLOWED[unit_of(source)]
    )
    assert wrong == []


def test_no_import_circle():
    edges = graph()
    # Tarjan's strongly connected components; any component of two or more is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert circles == []


def test_the_map_finds_a_circle_and_a_wrong_way_import(tmp_path, monkeypatch):
    """The checks above can fail: a planted circle and a planted upward import are both seen."""
    for package, body in (("worker", ""), ("producers", "")):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(body)
    (tmp_path / "simulator").mkdir()
    (tmp_path / "simulator" / "__init__.py").write_text("")
    (tmp_path / "producers" / "a.py").write_text("from producers import b\n")
    (tmp_path / "producers" / "b.py").write_text(
        "def f():\n    from producers.a import x\nimport worker.settings\n"
    )
    (tmp_path / "worker" / "settings.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    edges = graph()
    assert edges["producers.a"] == {"producers.b"}
    assert edges["producers.b"] == {"producers.a", "worker.settings"}
    with pytest.raises(AssertionError, match=r"producers\.a"):
        test_no_import_circle()
    with pytest.raises(AssertionError, match=r"producers\.b imports worker\.settings"):
        test_imports_point_the_way_the_map_says()


def test_every_folder_says_what_it_holds():
    folders = {path.parent for package in PACKAGES for path in (ROOT / package).rglob("*.py")}
    for folder in sorted(folders):
        init = folder / "__init__.py"
        assert init.exists(), f"{folder.relative_to(ROOT)} has no __init__.py"
        docstring = ast.get_docstring(ast.parse(init.read_text()))
        assert docstring, f"{init.relative_to(ROOT)} has no docstring"
