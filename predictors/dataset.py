"""Supervised samples of the forecasting problem: one row per (run, prefix k, component)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import pandas as pd

from foresight.circuits import circuit
from predictors.features import FEATURES, Priors, prior_free_features, with_priors
from predictors.problem import ForecastProblem, Trajectory, observe, target_scores, valid_prefixes


class Dataset(NamedTuple):
    """Aligned on the index (run, k, component): features (rows x FEATURES), labels (1 if in the
    true circuit at the target), target_scores (|score| at the target), groups ("run@k", one per
    query), tasks (the run's task)."""

    features: pd.DataFrame
    labels: pd.Series
    target_scores: pd.Series
    groups: pd.Series
    tasks: pd.Series


def training_prefixes(problem: ForecastProblem) -> range:
    """Prefixes a learned forecaster trains on: every k' <= problem.prefix (more samples per run)."""
    return range(problem.prefix + 1)


def sample_features(run: Trajectory, problem: ForecastProblem, k: int, priors: Priors | None) -> pd.DataFrame:
    """`features_at(observe(run, problem, k), problem, priors)`; the part that does not depend on
    the priors is computed once per (problem, k) and kept in `run.memo` (leave-one-out folds and
    every model of an evaluation share it)."""
    key = ("features", problem, k)
    if key not in run.memo:
        run.memo[key] = prior_free_features(observe(run, problem, k), problem)
    return with_priors(*run.memo[key], priors)


def build_dataset(
    runs: Sequence[Trajectory],
    problem: ForecastProblem,
    prefixes: Sequence[int] | None = None,
    priors: Priors | None = None,
) -> Dataset:
    """Samples of `runs` at `prefixes` (default: problem.prefix) whose target checkpoint exists,
    with the population priors `priors` (`features.features_at`)."""
    frames, labels, targets = [], [], []
    for run in runs:
        for k in valid_prefixes(run, problem, prefixes if prefixes is not None else [problem.prefix]):
            f = sample_features(run, problem, k, priors)
            truth = target_scores(run, problem, k).reindex(f.index)
            index = pd.MultiIndex.from_product([[run.name], [k], f.index], names=["run", "k", "component"])
            frames.append(f.set_axis(index))
            labels.append(
                pd.Series(f.index.isin(list(circuit(truth, problem.circuit_size))).astype(int), index)
            )
            targets.append(pd.Series(truth.abs().to_numpy(), index))
    if not frames:
        raise ValueError("no run has a target checkpoint for the requested prefixes")
    features = pd.concat(frames)
    runs_by_name = {r.name: r.task for r in runs}
    run_level = features.index.get_level_values("run")
    groups = run_level + "@" + features.index.get_level_values("k").astype(str)
    return Dataset(
        features[list(FEATURES)],
        pd.concat(labels).rename("label"),
        pd.concat(targets).rename("target_score"),
        pd.Series(groups, index=features.index, name="group"),
        pd.Series(run_level.map(runs_by_name), index=features.index, name="task"),
    )
