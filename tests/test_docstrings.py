"""Every public class and function of the three packages states its contract in a docstring
(a method may inherit the one of the method it overrides)."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def public_objects() -> list[tuple[str, object]]:
    """(qualified name, object) of every public class, function and method defined in the packages."""
    found = []
    for package in ("foresight", "trackers", "predictors"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            module = importlib.import_module(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
            for name, obj in vars(module).items():
                if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                    continue
                if inspect.isfunction(obj):
                    found.append((f"{module.__name__}.{name}", obj))
                elif inspect.isclass(obj):
                    found.append((f"{module.__name__}.{name}", obj))
                    fields = getattr(obj, "__dataclass_fields__", {})  # a field's default is no method
                    for member, value in vars(obj).items():
                        method = inspect.isfunction(value) or isinstance(value, property)
                        if method and not member.startswith("_") and member not in fields:
                            found.append((f"{module.__name__}.{name}.{member}", getattr(obj, member)))
    return found


def has_docstring(obj: object) -> bool:
    if inspect.isclass(obj):
        own = obj.__dict__.get("__doc__") or ""
        return bool(own.strip()) and not own.startswith(f"{obj.__name__}(")  # not a dataclass signature
    return bool((inspect.getdoc(obj) or "").strip())


def test_every_public_class_and_function_has_a_docstring() -> None:
    objects = public_objects()
    assert len(objects) > 200  # the walk found the packages
    missing = [name for name, obj in objects if not has_docstring(obj)]
    assert not missing, missing


def test_the_check_sees_a_missing_docstring() -> None:
    class Undocumented:
        def method(self) -> None: ...

    assert not has_docstring(Undocumented) and not has_docstring(Undocumented.method)
