"""Baseline forecasters; each scores a component by a predicted |score| at the target.

- `static`: |score| at checkpoint 0 (the old map).
- `last`: |score| at checkpoint k.
- `extrapolate`: per-component least-squares line of |score| over the steps of checkpoints
  0..k, evaluated at the target step (over checkpoint indices when the target step is unknown).
- `random`: uniform scores, seeded by (seed, run name).
- `anticipate`: |s0 + K (s_probe - s0)|, s_probe the probe scores; K maximises the mean
  Jaccard@n (circuits of heads and MLPs) on the training runs (1-D grid search). Without probe
  scores: static, with a warning.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from foresight.circuits import circuit, is_candidate
from predictors.base import Forecaster
from predictors.problem import Observation, Trajectory, level_scores, observe, target_scores

K_GRID = np.concatenate([[0.0], np.logspace(-1, 3, 81)])


def _scores(obs: Observation, level: str) -> pd.DataFrame:
    return level_scores(obs.history, level)


class Static(Forecaster):
    """|score| at checkpoint 0: the old map."""

    name = "static"

    def _predict(self, obs: Observation) -> pd.Series:
        return _scores(obs, self.problem.level).loc[0].abs()


class Last(Forecaster):
    """|score| at checkpoint k: re-localizing."""

    name = "last"

    def _predict(self, obs: Observation) -> pd.Series:
        return _scores(obs, self.problem.level).loc[obs.k].abs()


class Extrapolate(Forecaster):
    """The least-squares line of |score| over the observed steps, at the target step."""

    name = "extrapolate"

    def _predict(self, obs: Observation) -> pd.Series:
        a = _scores(obs, self.problem.level).abs()
        if obs.k == 0:
            return a.loc[0]
        steps = np.sort(obs.history["step"].unique()).astype(float)
        x, at = (steps, obs.target_step) if np.isfinite(obs.target_step) else (a.index.to_numpy(float), None)
        at = obs.target_index if at is None else at
        xc = x - x.mean()
        slope = xc @ (a.to_numpy() - a.to_numpy().mean(axis=0)) / (xc @ xc)
        return pd.Series(a.to_numpy().mean(axis=0) + slope * (at - x.mean()), index=a.columns)


class Random(Forecaster):
    """Uniform scores, seeded by (seed, run name)."""

    name = "random"

    def _predict(self, obs: Observation) -> pd.Series:
        components = _scores(obs, self.problem.level).columns
        rng = np.random.default_rng([self.seed, zlib.crc32(obs.run.encode())])
        return pd.Series(rng.random(len(components)), index=components)


class Anticipate(Forecaster):
    """|s0 + K (s_probe - s0)|: the first-order expansion along the probe's update."""

    name = "anticipate"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.k_factor = 1.0

    def _start_and_change(self, obs: Observation) -> tuple[pd.Series, pd.Series] | None:
        """(s0, s_probe - s0) per component, or None without probe scores of the level."""
        if obs.probe is None or not (obs.probe["level"] == self.problem.level).any():
            return None
        s0 = _scores(obs, self.problem.level).loc[0]
        probe = obs.probe[obs.probe["level"] == self.problem.level].set_index("component")["score"]
        return s0, probe.reindex(s0.index).fillna(s0) - s0

    def _fit(self, runs: Sequence[Trajectory]) -> None:
        n, cases = self.problem.circuit_size, []
        for run in runs:
            obs = observe(run, self.problem)
            start_change = self._start_and_change(obs)
            if start_change is not None and obs.target_index < run.n_checkpoints:
                s0, change = start_change
                keep = [is_candidate(c) for c in s0.index]  # the circuit's tie rule: by name
                s0, change = s0[keep].sort_index(), change[keep].sort_index()
                true = s0.index.isin(list(circuit(target_scores(run, self.problem), n)))
                cases.append((s0.to_numpy(), change.to_numpy(), s0.index.to_numpy(), true))
        if not cases:
            warnings.warn("anticipate: no training run has probe scores; K = 1", stacklevel=2)
            return

        def mean_jaccard(k_factor: float) -> float:
            hits = [
                true[np.lexsort((names, -np.abs(s0 + k_factor * d)))[:n]].sum()
                for s0, d, names, true in cases
            ]
            return float(np.mean([h / (2 * n - h) for h in hits]))

        self.k_factor = float(max(K_GRID, key=mean_jaccard))  # the first (smallest) K on ties

    def _predict(self, obs: Observation) -> pd.Series:
        start_change = self._start_and_change(obs)
        if start_change is None:
            warnings.warn(
                f"anticipate: run {obs.run} has no probe scores; falling back to static", stacklevel=2
            )
            return _scores(obs, self.problem.level).loc[0].abs()
        s0, change = start_change
        return (s0 + self.k_factor * change).abs()

    def state(self) -> dict[str, Any]:
        return {"k_factor": self.k_factor}

    def set_state(self, state: dict[str, Any]) -> None:
        self.k_factor = float(state["k_factor"])


BASELINES: tuple[type[Forecaster], ...] = (Static, Last, Extrapolate, Random, Anticipate)
