"""`foresight.registry.Registry`: names in order, aliases, the decorator, refusals."""

from __future__ import annotations

from dataclasses import fields
from functools import partial

import pytest

from foresight.registry import Registry, qualified_name


def first() -> str:
    return "first"


def second() -> str:
    return "second"


def test_names_resolve_with_their_aliases_in_registration_order() -> None:
    registry: Registry[object] = Registry("thing")
    registry.register("b", first, aliases=("bee", "b2"))
    registry.register("a", second)
    assert registry.names() == ("b", "a")
    assert list(registry.items()) == [("b", first), ("a", second)]
    assert registry.get("bee") is registry.get("b2") is registry.get("b") is first
    assert registry.name("bee") == "b" and registry.name("a") == "a"
    assert "bee" in registry and "a" in registry and "c" not in registry and 3 not in registry
    assert registry.find("b2") is first and registry.find("c") is None


def test_an_unknown_name_names_the_registered_ones() -> None:
    registry: Registry[object] = Registry("widget")
    registry.register("x", first, aliases=("ex",))
    registry.register("y", second)
    with pytest.raises(ValueError, match=r"^unknown widget 'z'; choose from x, y$"):
        registry.get("z")
    with pytest.raises(ValueError, match=r"^unknown widget 'z'; choose from x, y$"):
        registry.name("z")


def test_the_decorator_registers_and_returns_what_it_decorates() -> None:
    registry: Registry[type] = Registry("class")

    @registry.register("k", aliases=("kay",))
    class K:
        pass

    assert isinstance(K, type) and K.__name__ == "K"
    assert registry.get("kay") is K and registry.names() == ("k",)


def test_a_taken_name_or_alias_is_refused_for_another_object() -> None:
    registry: Registry[object] = Registry("thing")
    registry.register("a", first, aliases=("alpha",))
    name = f"{__name__}.first"
    for taken in ("a", "alpha"):
        with pytest.raises(ValueError, match=rf"^thing '{taken}' is registered already \({name}\)$"):
            registry.register(taken, second)
    with pytest.raises(ValueError, match="thing 'alpha' is registered already"):
        registry.register("b", second, aliases=("alpha",))
    assert registry.names() == ("a",) and "b" not in registry  # a refused registration adds nothing
    ranker, other = partial(first), partial(first)  # objects without a qualified name
    registry.register("p", ranker)
    with pytest.raises(ValueError, match="thing 'p' is registered already"):
        registry.register("p", other)


def test_the_same_object_or_qualified_name_again_replaces_itself() -> None:
    registry: Registry[object] = Registry("thing")
    registry.register("a", first)
    registry.register("b", second)
    assert registry.register("a", first) is first

    def make() -> type:
        class Reloaded:  # a new class object of the same qualified name each call
            pass

        return Reloaded

    old, new = make(), make()
    assert old is not new and qualified_name(old) == qualified_name(new)
    registry.register("r", old)
    registry.register("r", new)
    assert registry.get("r") is new and registry.names() == ("a", "b", "r")


def test_qualified_name() -> None:
    assert qualified_name(first) == f"{__name__}.first"
    assert qualified_name(Registry) == "foresight.registry.Registry"
    assert qualified_name(partial(first)) is None and qualified_name(3) is None


def test_the_four_registries_use_it() -> None:
    """Strategies, forecasters (with the alias lightgbm), attribution methods and tasks each
    register in one `Registry`, in the order the command line lists them."""
    from foresight.attribution.methods import METHODS
    from foresight.tasks import TASKS, get_task
    from foresight.tasks.builtin import IOI
    from foresight.updater.strategies import STRATEGIES, Static
    from predictors.registry import FORECASTERS
    from trackers.settings import TrackerSettings

    assert METHODS.names() == ("eap", "eap-ig", "patching")
    method = next(f for f in fields(TrackerSettings) if f.name == "method")
    assert method.metadata["choices"] == METHODS.names()
    with pytest.raises(ValueError, match=r"^unknown method 'gradcam'; choose from eap, eap-ig, patching$"):
        METHODS.get("gradcam")
    assert STRATEGIES.names()[:4] == ("free", "static", "random", "last")
    assert STRATEGIES.get("static") is Static
    assert FORECASTERS.name("lightgbm") == "lgbm" and "lightgbm" not in FORECASTERS.names()
    assert TASKS.get("ioi") is IOI and type(get_task("ioi_met")).__mro__[1] is IOI
    with pytest.raises(
        ValueError, match=r"^task 'ioi' is registered already \(foresight.tasks.builtin.IOI\)$"
    ):
        TASKS.register("ioi", Static)
    assert TASKS.get("ioi") is IOI
