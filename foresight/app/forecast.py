"""Plain functions behind the `foresight forecast` commands (wired into typer by the CLI)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console

from foresight.mlflow_log import resolve_tracking_uri
from foresight.tables import frame_table
from foresight.tasks import task_family
from foresight.tracking_uri import check_tracking_uri
from predictors.base import forecast
from predictors.evaluate import comparison_frame, evaluate, log_evaluation
from predictors.persist import load_forecaster, save_forecaster
from predictors.problem import (
    ForecastProblem,
    Trajectory,
    load_corpus,
    parse_horizon,
    valid_prefixes,
    with_checkpoint_index,
)
from predictors.registry import FORECASTERS, MODELS, make_forecaster

EVALUATION_EXPERIMENT = "foresight-forecasting"
EVALUATION_DIR = Path("runs/forecast-evaluate")  # the report, and calls queued for `foresight sync`


def _print(frame: pd.DataFrame, title: str) -> None:
    """`frame` as a rich table that fits the terminal (`foresight.tables.frame_table`)."""
    Console().print(frame_table(frame, title))


def _problem(prefix: int, horizon: str, circuit_size: int) -> ForecastProblem:
    try:
        parsed = parse_horizon(horizon)
    except ValueError:
        raise ValueError(f"--horizon {horizon!r}: must be a number of checkpoints or 'final'") from None
    return ForecastProblem(prefix, parsed, circuit_size)


def _corpus(trajectories: Path, problem: ForecastProblem) -> list[Trajectory]:
    """The runs under `trajectories`; ValueError if there are none, the circuit size exceeds
    the heads and MLPs of their graph, or no run has a forecast target after the prefix."""
    runs = load_corpus(trajectories)
    if not runs:
        raise ValueError(f"{trajectories}: no trajectories with checkpoints under it")
    n = min(len(run.graph.member_names()) for run in runs)
    if problem.circuit_size > n:
        raise ValueError(
            f"--circuit-size {problem.circuit_size}: larger than the {n} heads and MLPs of the graph "
            f"of the trajectories under {trajectories}"
        )
    if not any(valid_prefixes(run, problem, [problem.prefix]) for run in runs):
        longest = max(run.n_checkpoints for run in runs)
        raise ValueError(
            f"--prefix {problem.prefix}: no run under {trajectories} has a checkpoint to forecast after "
            f"checkpoint {problem.prefix} (the longest has {longest} checkpoints, 0..{longest - 1})"
        )
    return runs


def train_command(
    trajectories: Path,
    prefix: int,
    horizon: str,
    model: str,
    circuit_size: int,
    out: Path,
    seed: int = 0,
    hold_out: list[str] | None = None,
) -> Path:
    """Fit forecaster `model` on every trajectory under `trajectories` but those of the tasks in
    `hold_out` (the tasks it will forecast) and of their families (`task_family`: no near-copy
    of a forecast task is trained on); save it to `out`."""
    problem = _problem(prefix, horizon, circuit_size)
    runs = _corpus(trajectories, problem)
    held_out = hold_out or []
    tasks = {run.task for run in runs}
    for task in held_out:
        if task not in tasks:
            raise ValueError(f"--hold-out {task}: no runs of that task under {trajectories}")
    families = {task_family(task) for task in held_out}
    runs = [run for run in runs if task_family(run.task) not in families]
    if not runs:
        raise ValueError(f"--hold-out leaves no runs under {trajectories} to train on")
    forecaster = make_forecaster(model, problem, seed).fit(runs)
    save_forecaster(forecaster, out)
    Console().print(f"trained {FORECASTERS.name(model)} on {len(runs)} runs; saved to {out}")
    return out


def eval_command(
    trajectories: Path,
    prefix: int,
    horizon: str,
    circuit_size: int,
    models: list[str] | None = None,
    seed: int = 0,
    log_mlflow: bool = False,
) -> pd.DataFrame:
    """Leave-one-family-out comparison (`task_family`; a task outside the registered families is
    its own family) of `models` (default: all) on the trajectories under `trajectories`; prints
    the table and returns the summary. With `log_mlflow`, also logged (`log_evaluation`) to
    experiment EVALUATION_EXPERIMENT, with the report and any queued calls in EVALUATION_DIR."""
    problem = _problem(prefix, horizon, circuit_size)
    runs = _corpus(trajectories, problem)
    if log_mlflow:
        check_tracking_uri(resolve_tracking_uri())
    result = evaluate(runs, problem, models or list(MODELS), seed, groups=task_family)
    if log_mlflow:
        log_evaluation(result, EVALUATION_EXPERIMENT, EVALUATION_DIR)
    title = f"forecasting, k={prefix}, horizon {horizon}, n={circuit_size} (leave-one-family-out)"
    table = comparison_frame(result.summary)
    per_task = [c for c in table.columns if c.startswith("J ")]
    _print(table.drop(columns=per_task).reset_index(), title)
    by_task = table[per_task].T.rename(index=lambda c: c.removeprefix("J "))
    _print(by_task.rename_axis("family").reset_index(), "Jaccard@n per held-out family")
    return result.summary


def predict_command(forecaster: Path, trajectory: Path) -> pd.DataFrame:
    """Print (and return) the forecast circuit of one trajectory directory."""
    from trackers.store import load_probe, load_trajectory

    f = load_forecaster(forecaster)
    rows = with_checkpoint_index(load_trajectory(trajectory))
    if rows.empty:
        raise ValueError(f"{trajectory}: no checkpoints")
    run = Trajectory(str(rows["run"].iloc[0]), str(rows["task"].iloc[0]), rows, load_probe(trajectory))
    table = forecast(f, run)
    p = f.problem
    _print(
        table[table["in_circuit"]],
        f"{f.name} forecast of {run.name} at horizon {p.horizon} from k={p.prefix}",
    )
    return table
