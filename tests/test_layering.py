"""The packages depend one way (predictors -> trackers -> foresight), with no import cycles,
read from the module-level imports of every module (imports inside functions are wiring)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("foresight", "trackers", "predictors")
MAY_IMPORT = {
    "foresight": {"foresight"},
    "trackers": {"foresight", "trackers"},
    "predictors": set(PACKAGES),
    "foresight.app": set(PACKAGES),  # the application layer wires the packages
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def module_level_imports(path: Path) -> set[str]:
    """Project modules imported at module level (TYPE_CHECKING blocks excluded)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:  # `from pkg import submodule` names the submodule only
                    submodule = f"{node.module}.{alias.name}"
                    found.add(submodule if submodule in MODULES else node.module)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                visit(node.body + node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)

    visit(tree.body)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def resolve(name: str) -> str | None:
    """The project module an imported name lives in (a `from m import f` names m.f)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


GRAPH = {m: {r for n in module_level_imports(p) if (r := resolve(n)) and r != m} for m, p in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_one_way(module: str) -> None:
    package = "foresight.app" if module.startswith("foresight.app") else module.split(".")[0]
    wrong = sorted(m for m in GRAPH[module] if m.split(".")[0] not in MAY_IMPORT[package])
    assert not wrong, f"{module} imports {wrong} at module level"


def test_no_import_cycles() -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                cycle = path[path.index(target) :] + [target]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """A module-level `from predictors ...` in foresight is found; one inside a function is not."""
    bad = tmp_path / "bad.py"
    bad.write_text("from predictors.base import Forecaster\n\ndef f():\n    import trackers.store\n")
    assert module_level_imports(bad) == {"predictors.base"}
