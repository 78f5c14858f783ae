"""Tasks by name: the built-in synthetic tasks and their template-family variants register in
`TASKS` (a `foresight.registry.Registry`) when `builtin` and `families` are imported; a path
ending in .jsonl is a `JsonlTask`."""

from __future__ import annotations

from pathlib import Path

from foresight.tasks import builtin, families  # noqa: F401  (register the built-in and family tasks)
from foresight.tasks.base import TASKS, AttributionPair, Example, Task
from foresight.tasks.jsonl import JsonlTask, TaskFileError

__all__ = [
    "TASKS",
    "AttributionPair",
    "Example",
    "Task",
    "JsonlTask",
    "TaskFileError",
    "UnknownTask",
    "corpus_task_names",
    "get_task",
    "task_family",
    "task_names",
]


class UnknownTask(ValueError):
    """A task name that is neither registered nor a JSONL file."""


def task_names() -> list[str]:
    """Names of the built-in tasks: the registered tasks that are their own family."""
    return [name for name in TASKS.names() if task_family(name) == name]


def corpus_task_names() -> list[str]:
    """The built-in tasks and their template-family variants (`foresight.tasks.families`)."""
    return list(TASKS.names())


def task_family(name: str) -> str:
    """The family of a registered task (`Task.family`); any other name is its own family."""
    task = TASKS.find(name)
    return task().family if task is not None else name


def get_task(name_or_path: str) -> Task:
    """A built-in task or family variant by name, or a `JsonlTask` for a path ending in .jsonl."""
    task = TASKS.find(name_or_path)
    if task is not None:
        return task()
    if name_or_path.endswith(".jsonl"):
        if not Path(name_or_path).is_file():
            raise TaskFileError(f"{name_or_path}: no such file")
        return JsonlTask(name_or_path)
    raise UnknownTask(
        f"unknown task {name_or_path!r} (built in: {', '.join(task_names())}; or a .jsonl file)"
    )
