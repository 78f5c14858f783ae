"""Task registry: built-in synthetic tasks by name, or a JSONL file by path."""

from __future__ import annotations

from pathlib import Path

from foresight.tasks.base import AttributionPair, Example, Task
from foresight.tasks.builtin import BUILTIN_TASKS
from foresight.tasks.families import FAMILY_TASKS
from foresight.tasks.jsonl import JsonlTask, TaskFileError

__all__ = [
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
    """A task name that is neither built in nor a JSONL file."""


def task_names() -> list[str]:
    """Names of the built-in tasks."""
    return list(BUILTIN_TASKS)


def corpus_task_names() -> list[str]:
    """The built-in tasks and their template-family variants (`foresight.tasks.families`)."""
    return [*BUILTIN_TASKS, *FAMILY_TASKS]


def task_family(name: str) -> str:
    """The family of a registered task (`Task.family`); any other name is its own family."""
    task = BUILTIN_TASKS.get(name) or FAMILY_TASKS.get(name)
    return task().family if task is not None else name


def get_task(name_or_path: str) -> Task:
    """A built-in task or family variant by name, or a `JsonlTask` for a path ending in .jsonl."""
    if name_or_path in BUILTIN_TASKS:
        return BUILTIN_TASKS[name_or_path]()
    if name_or_path in FAMILY_TASKS:
        return FAMILY_TASKS[name_or_path]()
    if name_or_path.endswith(".jsonl"):
        if not Path(name_or_path).is_file():
            raise TaskFileError(f"{name_or_path}: no such file")
        return JsonlTask(name_or_path)
    raise UnknownTask(
        f"unknown task {name_or_path!r} (built in: {', '.join(BUILTIN_TASKS)}; or a .jsonl file)"
    )
