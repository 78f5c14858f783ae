"""The packages depend one way (predictors -> trackers -> foresight core), with no import
cycles; only the application layer (`foresight.app`) wires them together, and nothing imports it.

Every import counts: at module level, inside functions and classes, under `if TYPE_CHECKING`,
and import strings (a string constant that names a project module, as `"pkg.mod"` or
`"pkg.mod:attr"`, the form `importlib.import_module` and entry points take)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("foresight", "trackers", "predictors")
APP = "foresight.app"
# layer -> the layers it may import
MAY_IMPORT = {
    "foresight": {"foresight"},
    "trackers": {"foresight", "trackers"},
    "predictors": {"foresight", "trackers", "predictors"},
    APP: {"foresight", "trackers", "predictors", APP},
}
IMPORT_STRING = re.compile(r"(?:foresight|trackers|predictors)(?:\.\w+)+(?::\w+)?")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    """The layer of a project module: foresight.app, or its top-level package."""
    return APP if module == APP or module.startswith(APP + ".") else module.split(".")[0]


MODULES = {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _is_import_string(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and bool(IMPORT_STRING.fullmatch(node.value))
    )


def imports(path: Path, module_level: bool = False) -> set[str]:
    """Project names that `path` imports: every import statement (with `module_level`, only
    those that run when the module is imported: not inside functions or TYPE_CHECKING blocks)
    and, without it, every import string."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def add(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # `from pkg import submodule` names the submodule only
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES else node.module)
        elif not module_level and _is_import_string(node):
            found.add(node.value.partition(":")[0])

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            add(node)
            if isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                visit(node.body + node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)

    if module_level:
        visit(tree.body)
    else:
        for node in ast.walk(tree):
            add(node)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def resolve(name: str) -> str | None:
    """The project module an imported name lives in (a `from m import f` names m.f)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def wrong_imports(module: str, path: Path) -> list[str]:
    """The project modules that `module` (at `path`) imports against the layering."""
    allowed = MAY_IMPORT[layer(module)]
    targets = {resolve(n) or n for n in imports(path)}
    return sorted(t for t in targets if layer(t) not in allowed)


GRAPH = {m: {r for n in imports(p, True) if (r := resolve(n)) and r != m} for m, p in MODULES.items()}
FULL_GRAPH = {m: {r for n in imports(p) if (r := resolve(n)) and r != m} for m, p in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_one_way(module: str) -> None:
    wrong = wrong_imports(module, MODULES[module])
    assert not wrong, f"{module} ({layer(module)}) imports {wrong}"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of `graph` (module -> imported modules), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target, [*path, target])):
                return cycle
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module, [module])):
            return cycle
    return None


def test_no_import_cycles() -> None:
    """Among modules, counting imports inside functions too (a package `__init__` that re-exports
    its modules is left out: importing a submodule runs it first, which is no cycle)."""
    graph = {m: {t for t in ts if not _init_of(t, m)} for m, ts in FULL_GRAPH.items()}
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def _init_of(target: str, module: str) -> bool:
    """`target` is a package that contains `module` (its __init__ runs first, no cycle)."""
    return MODULES[target].name == "__init__.py" and module.startswith(target + ".")


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """A planted function-level import from foresight into predictors, an import string and a
    TYPE_CHECKING import are each found; the same imports from the app are allowed; a cycle
    through a function-level import is found."""
    planted = {
        "function": "def f():\n    from predictors.base import Forecaster\n",
        "string": 'STRATEGY = "predictors.strategies:Predictive"\n',
        "type-checking": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import trackers.store\n",
        "into the app": "def f():\n    from foresight.app import validation\n",
    }
    expected = {
        "function": ["predictors.base"],
        "string": ["predictors.strategies"],
        "type-checking": ["trackers.store"],
        "into the app": ["foresight.app.validation"],
    }
    for name, text in planted.items():
        path = tmp_path / f"{name}.py"
        path.write_text(text)
        assert wrong_imports("foresight.updater.planted", path) == expected[name], name
        assert wrong_imports("foresight.app.planted", path) == [], name
    assert imports(tmp_path / "function.py", module_level=True) == set()
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
