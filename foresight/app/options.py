"""Command-line options built from the fields of a settings record, so that a default, a range
and a help text have one home (the record, `foresight.config.setting`).

`config_options(Record, skip=...)` adds every field of `Record` (but those skipped or declared
by the command itself) to a typer command as `--field-name`, with the field's default and help;
the command receives their values as a dict. A new field is a new option.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Sequence
from dataclasses import MISSING, Field, fields
from typing import Any

import typer


def _cli_type(annotation: Any) -> Any:
    """The type typer parses a field as: a Literal's values are strings."""
    if typing.get_origin(annotation) is typing.Literal:
        return str
    args = typing.get_args(annotation)
    if type(None) in args and any(typing.get_origin(a) is typing.Literal for a in args):
        return str | None
    return annotation


def field_option(f: Field, annotation: Any) -> inspect.Parameter:
    """The keyword parameter of a typer command for field `f`: `--name-with-dashes`, the field's
    default and help."""
    default = f.default if f.default is not MISSING else ...
    return inspect.Parameter(
        f.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(default, help=f.metadata.get("help") or None),
        annotation=_cli_type(annotation),
    )


def option(record: type, name: str) -> Any:
    """The typer option of field `name` of `record`: its default and help."""
    (f,) = [f for f in fields(record) if f.name == name]
    return typer.Option(f.default, help=f.metadata.get("help") or None)


def option_fields(record: type, skip: Sequence[str] = ()) -> list[tuple[Field, Any]]:
    """The fields of `record` (with their resolved types) that become options."""
    hints = typing.get_type_hints(record)
    return [(f, hints[f.name]) for f in fields(record) if f.name not in skip]


def config_options(
    record: type, skip: Sequence[str] = (), into: str = "settings"
) -> Callable[[Callable], Callable]:
    """Decorator of a typer command with a parameter `into` (default None): the fields of `record`
    (but `skip` and the command's own parameters) become options, passed as the dict `into`.
    Decorators for several records stack (each with its own `into`)."""

    def decorate(command: Callable) -> Callable:
        own = [p for p in inspect.signature(command).parameters.values() if p.name != into]
        hints = typing.get_type_hints(command)
        own = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in own]
        names = {p.name for p in own}
        added = [field_option(f, t) for f, t in option_fields(record, skip) if f.name not in names]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            settings = {p.name: kwargs.pop(p.name) for p in added}
            return command(**kwargs, **{into: settings})

        wrapper.__signature__ = inspect.Signature([*own, *added])
        wrapper.__annotations__ = {p.name: p.annotation for p in [*own, *added]}
        del wrapper.__wrapped__  # typer reads the signature above, not the command's
        return wrapper

    return decorate
