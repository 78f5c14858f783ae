"""Checks of a forecasting request that read only manifests and file names.

`check_request` refuses an unknown forecaster, a held-out task without runs and a prefix that no
run can forecast from in seconds, before `predictors.problem.load_corpus` reads every checkpoint
of the corpus (a minute or more for a corpus of a few hundred runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from predictors.problem import ForecastProblem, parse_horizon
from predictors.registry import FORECASTERS, MODELS


def check_models(models: Sequence[str]) -> None:
    """ValueError naming `--model` unless every name is a forecaster or baseline of MODELS (or an
    alias of one)."""
    unknown = [m for m in models if m not in FORECASTERS]
    if unknown:
        raise ValueError(f"--model {unknown[0]!r}: choose from {', '.join(MODELS)}")


def corpus_index(root: Path) -> list[tuple[str, int]]:
    """(task, number of checkpoints) of every trajectory under `root` that has checkpoints, from
    its manifest and its checkpoint file names alone."""
    from trackers.store import find_trajectories, read_manifest, written_steps

    index = [(str(read_manifest(path)["task"]), len(written_steps(path))) for path in find_trajectories(root)]
    return [(task, n) for task, n in index if n]


def check_request(
    root: Path,
    prefix: int,
    horizon: str,
    circuit_size: int,
    models: Sequence[str] = (),
    hold_out: Sequence[str] = (),
) -> None:
    """ValueError naming the option at fault: an unknown `--model`, a `--horizon` that is
    neither a number nor 'final', no trajectory under `root`, a `--hold-out` task without runs
    there, or a `--prefix` after which no run has a checkpoint to forecast."""
    check_models(models)
    try:
        parsed = parse_horizon(horizon)
    except ValueError:
        raise ValueError(f"--horizon {horizon!r}: must be a number of checkpoints or 'final'") from None
    problem = ForecastProblem(prefix, parsed, circuit_size)
    index = corpus_index(root)
    if not index:
        raise ValueError(f"{root}: no trajectories with checkpoints under it")
    tasks = {task for task, _ in index}
    for task in hold_out:
        if task not in tasks:
            raise ValueError(f"--hold-out {task}: no runs of that task under {root}")
    if not any(prefix < n and prefix < problem.target_index(n, prefix) < n for _, n in index):
        longest = max(n for _, n in index)
        raise ValueError(
            f"--prefix {prefix}: no run under {root} has a checkpoint to forecast after "
            f"checkpoint {prefix} (the longest has {longest} checkpoints, 0..{longest - 1})"
        )
