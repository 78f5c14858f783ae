"""Who owns an output directory: the one check of `track`, `compare`, `sweep` and `forecast train`.

Each of these commands leaves a marker file in the directory it writes: `run.json` (a tracked
run), `comparison.md` (a comparison), `SWEEP_FILE` (a sweep) and `forecaster.json` (a
forecaster). `claim_output` refuses a directory that lies inside another command's directory,
or that holds a run already (of another kind, or of the same kind unless the command continues
that very run), and a path with a name longer than its file system allows. It writes nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

SWEEP_FILE = "sweep-record.json"
# marker file -> (kind, what the refusal calls it)
MARKERS = {
    "run.json": ("track", "tracked run (foresight track)"),
    "comparison.md": ("compare", "comparison (foresight compare)"),
    SWEEP_FILE: ("sweep", "sweep (foresight sweep)"),
    "forecaster.json": ("forecaster", "forecaster (foresight forecast train)"),
}
KINDS = tuple(kind for kind, _ in MARKERS.values())


class OutputDirError(ValueError):
    """An output directory that is another run's, or whose path cannot be created."""


def marker(path: Path) -> str | None:
    """The marker file name that directory `path` holds (None: none, or not a directory)."""
    return next((name for name in MARKERS if (path / name).is_file()), None)


def _exists(path: Path) -> bool:
    """Whether `path` exists (False, not an OSError, for a name too long to look up)."""
    try:
        path.lstat()
    except OSError:
        return False
    return True


def check_name_lengths(option: str, path: Path) -> None:
    """OutputDirError if a component of `path` that does not exist yet is longer (in bytes) than
    the file system of its nearest existing ancestor allows (NAME_MAX)."""
    existing = path
    while not _exists(existing) and existing != existing.parent:
        existing = existing.parent
    try:
        limit = os.pathconf(existing if existing.is_dir() else existing.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        return
    for part in path.relative_to(existing).parts if existing != path else ():
        if len(os.fsencode(part)) > limit:
            raise OutputDirError(
                f"{option} {path}: the name {part[:40]!r}... has {len(os.fsencode(part))} bytes, "
                f"the file system allows {limit}"
            )


def sweep_experiment(path: Path) -> str | None:
    """The MLflow experiment of the sweep whose directory is `path` (None: no sweep record)."""
    try:
        return json.loads((path / SWEEP_FILE).read_text()).get("experiment")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None


def claim_output(
    option: str, path: Path, kind: str, resume: bool = False, hint: str = "", sweep: str | None = None
) -> None:
    """OutputDirError unless a `kind` (one of KINDS) may write into directory `path`:
    no ancestor of `path` holds a marker (a run's directory is that run's alone), and `path`
    holds none, or one of `kind` with `resume` (the same run continued; a sweep continues when
    its record names experiment `sweep`). `hint` ends the refusal of a same-kind run (how to
    continue or replace it). Name lengths are checked (`check_name_lengths`)."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: choose from {', '.join(KINDS)}")
    check_name_lengths(option, path)
    absolute = path.absolute()
    for parent in absolute.parents:
        found = marker(parent)
        if found is not None:
            raise OutputDirError(
                f"{option} {path}: lies inside {parent}, the directory of a {MARKERS[found][1]}; "
                f"choose another {option}"
            )
    found = marker(path)
    if found is None:
        return
    same = MARKERS[found][0] == kind
    if same and kind == "sweep":
        resume = sweep_experiment(path) == sweep
    if same and resume:
        return
    label = MARKERS[found][1]
    if same:
        raise OutputDirError(f"{option} {path}: holds a {label.split(' (')[0]} already{hint}")
    raise OutputDirError(f"{option} {path}: holds a {label} ({found}); choose another {option}")


def claim_sweep(option: str, out: Path, tasks: list[str] | tuple[str, ...], experiment: str) -> None:
    """`claim_output` for a sweep of `experiment` into `out` and for each task's directory
    `out/{task}` (where its trials and comparison go): a task directory that holds a comparison or
    any other run is refused unless `out` is this experiment's sweep already."""
    claim_output(option, out, "sweep", sweep=experiment)
    ours = sweep_experiment(out) == experiment
    for task in tasks:
        found = marker(out / task)
        if found is not None and not (ours and MARKERS[found][0] == "compare"):
            raise OutputDirError(
                f"{option} {out}: {out / task} holds a {MARKERS[found][1]} ({found}), which the "
                f"sweep's task {task} would overwrite; choose another {option}"
            )


def record_sweep(out: Path, experiment: str) -> None:
    """Mark `out` as the directory of the sweep of `experiment` (`SWEEP_FILE`)."""
    out.mkdir(parents=True, exist_ok=True)
    if sweep_experiment(out) != experiment:
        (out / SWEEP_FILE).write_text(json.dumps({"experiment": experiment}) + "\n")
