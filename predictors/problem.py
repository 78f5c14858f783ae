"""The circuit forecasting problem.

A `Trajectory` is one tracked run as the predictors see it: rows (run, step, level,
component, score, ..., graph) as returned by `trackers.store.load_trajectories`, one row per
(step, component). Checkpoint index k is the position of a step among the run's sorted steps
(column `ckpt`, added by `split_runs`).

`ForecastProblem(prefix=k, horizon=h, circuit_size=n, level)`: from checkpoints 0..k of a
run, predict for every component of `level` whether it is in the circuit
(`foresight.circuits.circuit`: the top-n heads and MLPs by |score|) at checkpoint k+h (or
the run's last checkpoint for horizon "final"), and its rank.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from foresight.graph import Graph
from predictors.settings import ForecastProblem, Horizon, Level


class ForecasterMismatch(ValueError):
    """A forecaster applied to trajectories of another graph (or problem) than it was trained on."""


def parse_horizon(text: str | int) -> Horizon:
    """ "final" or a positive int from a CLI string."""
    return "final" if text == "final" else int(text)


@dataclass(frozen=True)
class Trajectory:
    """One trajectory: `rows` (with column `ckpt`) and optional `probe` rows (one step);
    `memo` keeps what is derived from them once (`predictors.dataset`: features per prefix)."""

    name: str
    task: str
    rows: pd.DataFrame
    probe: pd.DataFrame | None = None
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def steps(self) -> np.ndarray:
        """The run's checkpoint steps, ascending."""
        return np.sort(self.rows["step"].unique())

    @property
    def n_checkpoints(self) -> int:
        """How many checkpoints the run has."""
        return int(self.rows["ckpt"].max()) + 1

    @cached_property
    def graph(self) -> Graph:
        """The computational graph the run's scores live on (from its manifest)."""
        return graph_of_rows(self.rows)

    def scores(self, level: Level) -> pd.DataFrame:
        """`level_scores` of the run's rows (computed once, kept in `memo`)."""
        key = ("scores", level)
        if key not in self.memo:
            self.memo[key] = level_scores(self.rows, level)
        return self.memo[key]


def graph_of_rows(rows: pd.DataFrame) -> Graph:
    """The graph recorded in the `graph` column (the manifest's graph as JSON) of one run's rows."""
    graphs = rows["graph"].unique()
    if len(graphs) != 1:
        raise ValueError(f"rows of one run hold {len(graphs)} graphs")
    return Graph.from_dict(json.loads(graphs[0]))


def with_checkpoint_index(rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` of one run with column `ckpt` = index of the row's step among the run's sorted steps."""
    steps = np.sort(rows["step"].unique())
    return rows.assign(ckpt=np.searchsorted(steps, rows["step"].to_numpy()).astype("int64"))


def split_runs(
    trajectories: pd.DataFrame, probes: Mapping[str, pd.DataFrame] | None = None
) -> list[Trajectory]:
    """The runs of a `load_trajectories` table, sorted by name; `probes` maps run -> probe rows."""
    probes = probes or {}
    return [
        Trajectory(
            str(name),
            str(rows["task"].iloc[0]),
            with_checkpoint_index(rows.reset_index(drop=True)),
            probes.get(str(name)),
        )
        for name, rows in trajectories.groupby("run", sort=True)
    ]


def load_corpus(root: str | Path) -> list[Trajectory]:
    """Every trajectory under `root` (trackers.store) with its probe scores, as runs."""
    from trackers.store import find_trajectories, load_probe, load_trajectories, read_manifest

    probes = {}
    for path in find_trajectories(root):
        probe = load_probe(path)
        if probe is not None:
            probes[str(read_manifest(path)["run_id"])] = probe
    return split_runs(load_trajectories(root), probes)


def corpus_fingerprint(root: str | Path) -> str:
    """SHA-256 over the relative path and bytes of every file of every trajectory under `root`
    (sorted): equal corpora, equal fingerprints; any added, removed or changed file changes it."""
    import hashlib

    from trackers.store import find_trajectories

    digest, root = hashlib.sha256(), Path(root)
    for trajectory in find_trajectories(root):
        for file in sorted(f for f in Path(trajectory).rglob("*") if f.is_file()):
            digest.update(str(file.relative_to(root)).encode() + b"\0")
            with file.open("rb") as handle:
                digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


def level_scores(rows: pd.DataFrame, level: Level) -> pd.DataFrame:
    """Signed scores of `level` as a (checkpoint index x component) table, components sorted."""
    rows = rows[rows["level"] == level]
    return rows.pivot(index="ckpt", columns="component", values="score").sort_index(axis=1)


@dataclass(frozen=True)
class Observation:
    """What a forecaster may see of a run: rows of checkpoints 0..k, the probe, and where the
    target lies (index, and step when known, else NaN)."""

    run: str
    task: str
    history: pd.DataFrame
    probe: pd.DataFrame | None
    k: int
    target_index: int
    target_step: float

    @cached_property
    def graph(self) -> Graph:
        """The graph of the observed run."""
        return graph_of_rows(self.history)


def observe(
    run: Trajectory, problem: ForecastProblem, prefix: int | None = None, n_checkpoints: int | None = None
) -> Observation:
    """The observation of `run` at checkpoint `prefix` (default problem.prefix): rows with ckpt <= k.

    `n_checkpoints` overrides the run's own count (for horizon "final" on a partial run).
    """
    k = problem.prefix if prefix is None else prefix
    if k >= run.n_checkpoints:
        raise ValueError(f"run {run.name}: prefix {k} but only {run.n_checkpoints} checkpoints")
    target = problem.target_index(n_checkpoints or run.n_checkpoints, k)
    steps = run.steps
    target_step = float(steps[target]) if target < len(steps) else float("nan")
    history = run.rows[run.rows["ckpt"] <= k].reset_index(drop=True)
    return Observation(run.name, run.task, history, run.probe, k, target, target_step)


def target_scores(run: Trajectory, problem: ForecastProblem, prefix: int | None = None) -> pd.Series:
    """Signed scores of the problem's level at the target checkpoint of `run` (component -> score)."""
    k = problem.prefix if prefix is None else prefix
    target = problem.target_index(run.n_checkpoints, k)
    if target >= run.n_checkpoints:
        raise ValueError(f"run {run.name}: target checkpoint {target} but {run.n_checkpoints} checkpoints")
    return run.scores(problem.level).loc[target]


def valid_prefixes(run: Trajectory, problem: ForecastProblem, prefixes: Iterable[int]) -> list[int]:
    """The prefixes whose target checkpoint exists in `run` and lies after them."""
    n = run.n_checkpoints
    return [k for k in prefixes if k < n and k < problem.target_index(n, k) < n]
