"""`Registry`: named things of one kind (strategies, forecasters, attribution methods, tasks).

A registry maps names, in the order of registration, to objects; an alias is another name of a
registered one. `register(name, obj, aliases)` adds one (`register(name)` is the decorator
form). The same object again under its name (or one of the same qualified name, as a reloaded
module or a Ray worker makes it) replaces itself; another object under a taken name or alias is
a ValueError. `get` resolves an alias and raises ValueError "unknown KIND 'x'; choose from a,
b, c" for an unknown name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar, overload

T = TypeVar("T")
U = TypeVar("U")


def qualified_name(obj: object) -> str | None:
    """`module.qualname` of a class or function; None for other objects (a `functools.partial`)."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return f"{module}.{qualname}" if isinstance(module, str) and isinstance(qualname, str) else None


class Registry(Generic[T]):
    """Objects of one `kind` ("strategy", "forecaster", ...) by name, with aliases."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._objects: dict[str, T] = {}
        self._aliases: dict[str, str] = {}  # alias -> registered name

    @overload
    def register(self, name: str) -> Callable[[U], U]: ...

    @overload
    def register(self, name: str, obj: T, aliases: Iterable[str] = ()) -> T: ...

    def register(self, name: str, obj: object = None, aliases: Iterable[str] = ()) -> object:
        """`obj` becomes `name` (and its `aliases`); returns `obj`. Without `obj`: a decorator
        that registers what it decorates."""
        if obj is None:
            return lambda decorated: self.register(name, decorated, aliases)
        aliases = tuple(aliases)
        self._check_free(name, obj)
        for alias in aliases:
            self._check_free(alias, obj)
        self._objects[name] = obj  # type: ignore[assignment]
        self._aliases.update(dict.fromkeys(aliases, name))
        return obj

    def _check_free(self, name: str, obj: object) -> None:
        """ValueError if `name` (a name or an alias) belongs to another object than `obj`."""
        found = self._objects.get(self._aliases.get(name, name))
        if found is None or found is obj:
            return
        key = qualified_name(found)
        if key is None or key != qualified_name(obj):
            raise ValueError(f"{self.kind} {name!r} is registered already ({key or repr(found)})")

    def name(self, name: str) -> str:
        """The registered name of `name` (itself, or the one it is an alias of); ValueError
        naming the registered ones if it is neither."""
        resolved = self._aliases.get(name, name)
        if resolved not in self._objects:
            raise ValueError(f"unknown {self.kind} {name!r}; choose from {', '.join(self._objects)}")
        return resolved

    def get(self, name: str) -> T:
        """The object registered as `name` or under its alias `name` (ValueError: see `name`)."""
        return self._objects[self.name(name)]

    def find(self, name: str) -> T | None:
        """The object registered as `name` or under its alias `name`, or None."""
        return self._objects.get(self._aliases.get(name, name))

    def names(self) -> tuple[str, ...]:
        """The registered names (no aliases), in the order of registration."""
        return tuple(self._objects)

    def items(self) -> Iterator[tuple[str, T]]:
        """(name, object) in the order of registration."""
        return iter(tuple(self._objects.items()))

    def __contains__(self, name: object) -> bool:
        """`name` is registered, as a name or an alias."""
        return isinstance(name, str) and self._aliases.get(name, name) in self._objects
