"""Forecasting problem, features and dataset: definitions, and no leakage from after checkpoint k."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from synthetic import synthetic_trajectories

from foresight.circuits import circuit
from predictors.dataset import build_dataset, sample_features
from predictors.features import FEATURES, features_at, population_priors
from predictors.problem import ForecastProblem, Trajectory, observe, split_runs, target_scores

PROBLEM = ForecastProblem(prefix=3, horizon=2, circuit_size=5)


@pytest.fixture(scope="module")
def corpus() -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    return synthetic_trajectories(tasks=("t0", "t1"), seeds=(0,), edges=True)


def perturbed_after(run: Trajectory, k: int) -> Trajectory:
    """`run` with every score and grad_norm after checkpoint k replaced by noise."""
    rows = run.rows.copy()
    later = rows["ckpt"] > k
    rng = np.random.default_rng(1)
    rows.loc[later, "score"] = rng.normal(0, 5, later.sum())
    rows.loc[later, "grad_norm"] = rng.uniform(0, 9, later.sum())
    return Trajectory(run.name, run.task, rows, run.probe)


def test_problem_validation_and_targets() -> None:
    assert PROBLEM.target_index(8) == 5 and ForecastProblem(3, "final", 5).target_index(8) == 7
    for bad in ({"prefix": -1}, {"horizon": 0}, {"circuit_size": 0}, {"level": "head"}):
        with pytest.raises(ValueError):
            ForecastProblem(**{"prefix": 1, "horizon": 1, "circuit_size": 2, **bad})
    assert circuit(pd.Series({"m1": 1.0, "m0": 1.0, "m2": 0.5}), 1) == {"m0"}  # ties broken by name
    assert circuit(pd.Series({"m0": -3.0, "a0.h0": 2.0, "m1": 1.0, "embed": 9.0}), 2) == {"m0", "a0.h0"}


@pytest.mark.parametrize("level", ["node", "edge"])
def test_features_ignore_checkpoints_after_k(corpus: tuple, level: str) -> None:
    problem = ForecastProblem(3, 2, 5, level)
    run = split_runs(*corpus)[0]
    before = features_at(observe(run, problem), problem)
    assert list(before.columns) == list(FEATURES) and before.index.is_monotonic_increasing
    after = features_at(observe(perturbed_after(run, 3), problem), problem)
    pd.testing.assert_frame_equal(before, after)
    # the check can fail: perturbing checkpoint k itself changes the features
    changed = features_at(observe(perturbed_after(run, 2), problem), problem)
    assert not before.equals(changed)


def test_features_slice_an_unsliced_history(corpus: tuple) -> None:
    run = split_runs(*corpus)[0]
    obs = observe(run, PROBLEM)
    leaky = type(obs)(
        obs.run, obs.task, perturbed_after(run, 3).rows, obs.probe, obs.k, obs.target_index, 0.0
    )
    pd.testing.assert_frame_equal(features_at(obs, PROBLEM), features_at(leaky, PROBLEM))


def test_feature_values_by_hand(corpus: tuple) -> None:
    run = split_runs(*corpus)[0]
    f = features_at(observe(run, PROBLEM), PROBLEM)
    scores = run.rows[run.rows["level"] == "node"].pivot(index="ckpt", columns="component", values="score")
    a = scores.abs()
    np.testing.assert_allclose(f["abs_k"], a.loc[3] / a.loc[3].max())
    assert f["rank_k"].min() == 0 and f["rank_k"].max() == 1 and f["in_circuit_k"].sum() == 5
    absn = a.div(a.max(axis=1), axis=0).loc[:3]
    slope = np.polyfit(np.arange(4), absn["a0.h0"], 1)[0]
    assert f.loc["a0.h0", "slope"] == pytest.approx(slope)
    assert f.loc["logits", "layer"] == 1.0 and f.loc["embed", "layer"] == 0.0
    assert f.loc["m2", "layer_mlp"] == f.loc["m2", "abs_k"]
    assert f.loc["m2", "layer_heads_mean"] == pytest.approx(
        f.loc[[f"a2.h{h}" for h in range(4)], "abs_k"].mean()
    )
    assert f[["kind_embed", "kind_head", "kind_mlp", "kind_logits"]].sum().tolist() == [1, 16, 4, 1]
    assert f["probe_abs"].notna().all() and f["steps_to_target"].eq(2).all()


def test_dataset_labels_are_the_future_circuit(corpus: tuple) -> None:
    runs = split_runs(*corpus)
    data = build_dataset(runs, PROBLEM, prefixes=[1, 3, 6])  # 6 + 2 > 7: no target, skipped
    assert set(data.features.index.get_level_values("k")) == {1, 3}
    assert data.labels.groupby(data.groups).sum().eq(5).all()
    assert data.groups.nunique() == 4 and set(data.tasks) == {"t0", "t1"}
    true = target_scores(runs[0], PROBLEM)
    labelled = data.labels.loc[(runs[0].name, 3)]
    assert set(labelled.index[labelled == 1]) == circuit(true, 5)
    np.testing.assert_allclose(data.target_scores.loc[(runs[0].name, 3)], true.abs())


def test_lookahead_regime_and_population_priors_by_hand(corpus: tuple) -> None:
    run = split_runs(*corpus)[0]
    rows = run.rows.assign(lookahead=run.rows["score"] * 0.5, regime_mode="lora", regime_strategy="static")
    run = Trajectory(run.name, run.task, rows.assign(regime_lr=1e-2), run.probe)
    priors = population_priors([run], PROBLEM)
    f = features_at(observe(run, PROBLEM), PROBLEM, priors)
    scores = run.rows[run.rows["level"] == "node"].pivot(index="ckpt", columns="component", values="score")
    top = scores.loc[3].abs().max()
    np.testing.assert_allclose(f["lookahead_k"], 0.5 * scores.loc[3] / top)
    np.testing.assert_allclose(f["lookahead_abs_k"], 0.5 * scores.loc[3].abs() / top)
    assert (f[["regime_lora", "regime_masked"]] == 1.0).all().all() and np.allclose(f["regime_log_lr"], -2.0)
    absn = scores.abs().div(scores.abs().max(axis=1), axis=0)
    heads = [f"a2.h{h}" for h in range(4)]
    final = circuit(scores.iloc[-1], PROBLEM.circuit_size)
    assert f.loc["a2.h1", "prior_d_abs"] == pytest.approx((absn.iloc[-1] - absn.iloc[0])[heads].mean())
    assert f.loc["a2.h1", "prior_in_circuit"] == pytest.approx(np.mean([h in final for h in heads]))
    assert features_at(observe(run, PROBLEM), PROBLEM)["prior_d_abs"].isna().all()  # no priors: NaN


def test_reused_features_take_each_call_s_priors(corpus: tuple) -> None:
    """`sample_features` keeps the prior-free part on the run: a second call with other priors
    (another leave-one-out fold) gets its own prior columns and otherwise the same values."""
    runs = split_runs(*corpus)
    first, second = population_priors(runs[:1], PROBLEM), population_priors(runs[1:], PROBLEM)
    assert first != second
    for priors in (first, second, None):
        reused = sample_features(runs[0], PROBLEM, 3, priors)
        pd.testing.assert_frame_equal(reused, features_at(observe(runs[0], PROBLEM, 3), PROBLEM, priors))
    assert ("features", PROBLEM, 3) in runs[0].memo
