"""Baselines on a hand-built 5-component trajectory (3 heads, an MLP, logits), checked against
hand-computed top sets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from foresight.graph import Graph
from predictors.baselines import Anticipate, Extrapolate, Last, Random, Static
from predictors.problem import ForecastProblem, Trajectory, observe, with_checkpoint_index
from trackers.store import graph_column

STEPS = (0, 10, 20, 40)
# |score| per checkpoint; the last one (step 40) is the target
SCORES = {
    "a0.h2": (5.0, 4.0, 3.0, 1.0),  # falls 0.1 per step
    "a0.h0": (1.0, 2.0, 3.0, 5.0),  # rises 0.1 per step
    "a0.h1": (-4.0, -4.0, -4.0, -4.0),
    "m0": (0.5, 1.5, 2.5, 4.5),  # rises 0.1 per step
    "logits": (2.0, 2.5, 2.0, 2.0),
}
PROBE = {"a0.h2": 4.9, "a0.h0": 1.4, "a0.h1": -4.0, "m0": 0.9, "logits": 2.0}
PROBLEM = ForecastProblem(prefix=2, horizon="final", circuit_size=2)
POSITION = {
    "a0.h2": ("head", 0, 2),
    "a0.h0": ("head", 0, 0),
    "a0.h1": ("head", 0, 1),
    "m0": ("mlp", 0, -1),
    "logits": ("logits", 1, -1),
}


GRAPH = graph_column(Graph(n_layers=1, n_heads=3))


def rows(scores: dict[str, float], step: int) -> pd.DataFrame:
    return pd.DataFrame(
        [
            ("toy", "task", 0, "m", "free", GRAPH, step, "node", c, *POSITION[c], s, np.nan, "eap")
            for c, s in scores.items()
        ],
        columns=[
            "run",
            "task",
            "seed",
            "model",
            "strategy",
            "graph",
            "step",
            "level",
            "component",
            "kind",
            "layer",
            "head",
            "score",
            "grad_norm",
            "method",
        ],
    )


def toy_run(probe: bool = True) -> Trajectory:
    table = pd.concat([rows({c: v[i] for c, v in SCORES.items()}, s) for i, s in enumerate(STEPS)])
    return Trajectory("toy", "task", with_checkpoint_index(table), rows(PROBE, 0) if probe else None)


def top(forecaster_cls: type, run: Trajectory | None = None, **state: float) -> set[str]:
    run = run or toy_run()
    f = forecaster_cls(PROBLEM).fit([run])
    for key, value in state.items():
        setattr(f, key, value)
    scores = f.predict(observe(run, PROBLEM))
    return set(scores.sort_values(ascending=False, kind="mergesort").index[:2])


def test_static_last_extrapolate() -> None:
    assert top(Static) == {"a0.h2", "a0.h1"}  # |s0| = 5, 4
    assert top(Last) == {"a0.h1", "a0.h0"}  # |s2| = 4, then 3 = 3 (embed, a0.h0): ties by name
    # fitted over steps 0, 10, 20 and evaluated at step 40: embed 1, a0.h0 5, a0.h1 4, m0 4.5, logits 13/6
    scores = Extrapolate(PROBLEM).fit([toy_run()]).predict(observe(toy_run(), PROBLEM))
    np.testing.assert_allclose(scores[["a0.h2", "a0.h0", "a0.h1", "m0", "logits"]], [1, 5, 4, 4.5, 13 / 6])
    assert top(Extrapolate) == {"a0.h0", "m0"}  # over checkpoint index it would be {a0.h0, a0.h1}


def test_anticipate_fits_k_and_falls_back_to_static() -> None:
    f = Anticipate(PROBLEM).fit([toy_run()])
    # Jaccard 1 needs 1 + 0.4K > 4, 0.5 + 0.4K > 4 and |5 - 0.1K| < 0.5 + 0.4K: K > 9; grid point 10
    assert f.k_factor == pytest.approx(10.0)
    assert top(Anticipate) == {"a0.h0", "m0"}
    assert top(Anticipate, k_factor=0.0) == {"a0.h2", "a0.h1"}  # K = 0 is the old map
    with pytest.warns(UserWarning, match="no probe scores"):
        scores = f.predict(observe(toy_run(probe=False), PROBLEM))
    pd.testing.assert_series_equal(
        scores, Static(PROBLEM).fit([toy_run()]).predict(observe(toy_run(), PROBLEM)), check_names=False
    )


def test_random_is_seeded() -> None:
    obs = observe(toy_run(), PROBLEM)
    a, b = Random(PROBLEM, seed=1).fit([toy_run()]), Random(PROBLEM, seed=2).fit([toy_run()])
    pd.testing.assert_series_equal(a.predict(obs), a.predict(obs))
    assert not a.predict(obs).equals(b.predict(obs))
