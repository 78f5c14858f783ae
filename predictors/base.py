"""The forecaster interface: fit on runs, predict a score per component from an observation."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from foresight.circuits import circuit, rank
from foresight.graph import Graph
from predictors.features import Priors, features_at, population_priors
from predictors.problem import ForecasterMismatch, ForecastProblem, Observation, Trajectory, observe


class Forecaster(ABC):
    """Scores each component of the problem's level; the top-n scores are the forecast circuit.

    `fit` records the graph of the training runs (all must share one) and their population
    priors (`features.population_priors`); `predict` raises ForecasterMismatch for an
    observation of another graph; `features` is what a learned forecaster is served.
    Subclasses implement `_predict` and, when they learn something, `_fit`, `state`/`set_state`
    (JSON) and `save_model`/`load_model`.
    """

    name: ClassVar[str]

    def __init__(self, problem: ForecastProblem, seed: int = 0) -> None:
        self.problem, self.seed = problem, seed
        self.graph: Graph | None = None
        self.n_checkpoints = 0  # most checkpoints of a training run: "final" for partial runs
        self.priors: Priors = {}

    def fit(self, runs: Sequence[Trajectory]) -> Self:
        """Learn from `runs` (all of one graph); returns self."""
        if not runs:
            raise ValueError(f"{self.name}: no training runs")
        graphs = {r.graph for r in runs}
        if len(graphs) > 1:
            raise ForecasterMismatch(f"{self.name}: training runs come from {len(graphs)} different graphs")
        self.graph = graphs.pop()
        self.n_checkpoints = max(r.n_checkpoints for r in runs)
        self.priors = population_priors(runs, self.problem)
        self._fit(runs)
        return self

    def predict(self, obs: Observation) -> pd.Series:
        """Predicted score per component (index sorted by name); higher = more likely in the circuit."""
        if self.graph is None:
            raise RuntimeError(f"{self.name}: predict before fit")
        check_graph(self.graph, obs.graph, f"run {obs.run}")
        return self._predict(obs).sort_index().rename(self.name)

    def features(self, obs: Observation) -> pd.DataFrame:
        """`features.features_at` of `obs` with this forecaster's population priors."""
        return features_at(obs, self.problem, self.priors)

    @property
    def levels_needed(self) -> tuple[str, ...]:
        """The trajectory levels `predict` reads (what a tracker must record to serve it)."""
        return (self.problem.level,)

    @property
    def needs_lookahead(self) -> bool:
        """Whether `predict` reads the look-ahead derivatives (so a tracker serving it must
        record them); the baselines do not."""
        return False

    def _fit(self, runs: Sequence[Trajectory]) -> None:  # noqa: B027 (most baselines learn nothing)
        pass

    @abstractmethod
    def _predict(self, obs: Observation) -> pd.Series: ...

    def state(self) -> dict[str, Any]:
        """JSON-serialisable learned state other than the model file."""
        return {}

    def set_state(self, state: dict[str, Any]) -> None:  # noqa: B027
        """Restore what `state` returned."""

    def save_model(self, directory: Path) -> None:  # noqa: B027
        """Write the learned model's files (if any) to `directory`."""

    def load_model(self, directory: Path) -> None:  # noqa: B027
        """Read what `save_model` wrote."""


def forecast(forecaster: Forecaster, run: Trajectory) -> pd.DataFrame:
    """The forecast of `run` at the problem's prefix: one row per component (best first, ties
    by name) with score, rank (1 = best) and in_circuit (the forecast circuit: the top
    circuit_size heads and MLPs by predicted score). For horizon "final", a run shorter than
    the training runs is taken to end where they did."""
    problem = forecaster.problem
    obs = observe(run, problem, n_checkpoints=max(run.n_checkpoints, forecaster.n_checkpoints))
    scores = forecaster.predict(obs)
    names = rank(scores, magnitude=False)
    members = circuit(scores, problem.circuit_size, magnitude=False)
    return pd.DataFrame(
        {
            "component": names,
            "score": scores[names].to_numpy(),
            "rank": np.arange(1, len(names) + 1),
            "in_circuit": [n in members for n in names],
        }
    )


def describe(graph: Graph) -> str:
    """A short description of a graph for error messages."""
    residual = "parallel" if graph.parallel else "sequential"
    return (
        f"{graph.fingerprint()[:12]} ({graph.n_layers} layers x {graph.n_heads} heads, {residual} residual)"
    )


def check_graph(expected: Graph, actual: Graph, where: str) -> None:
    """Raise ForecasterMismatch if `actual` is not the graph the forecaster was trained on."""
    if expected.fingerprint() != actual.fingerprint():
        raise ForecasterMismatch(
            f"{where}: graph {describe(actual)} differs from the forecaster's training graph "
            f"{describe(expected)}"
        )
