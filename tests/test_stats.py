"""The cluster-level statistics layer on cases whose answer is known: exact sign-flip p against an
enumeration, a planted effect, the nominal rejection rate under a simulated null, Holm by hand,
and pseudo-replicated seeds that must not inflate significance."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from foresight.stats import cluster_ci, holm, paired_test, paired_tests, sign_flip_p


def enumerated_p(diffs: np.ndarray) -> float:
    """Two-sided sign-flip p by enumerating every sign pattern (independent of scipy)."""
    observed = abs(diffs.mean())
    means = [abs((np.array(s) * diffs).mean()) for s in itertools.product([1, -1], repeat=len(diffs))]
    return float(np.mean(np.array(means) >= observed - 1e-12))


def long_frame(diffs_by_cluster: dict[str, list[float]]) -> pd.DataFrame:
    """Long frame (strategy, task, seed, value): b is 0, a is the difference."""
    rows = []
    for task, diffs in diffs_by_cluster.items():
        for seed, d in enumerate(diffs):
            rows += [
                {"strategy": "a", "task": task, "seed": seed, "value": d},
                {"strategy": "b", "task": task, "seed": seed, "value": 0.0},
            ]
    return pd.DataFrame(rows)


def test_sign_flip_is_exact_for_few_clusters() -> None:
    diffs = np.array([0.3, -0.1, 0.25, 0.4, 0.05, -0.02, 0.2])
    assert sign_flip_p(diffs) == pytest.approx(enumerated_p(diffs))
    # all of 10 clusters positive: only the all-positive and all-negative patterns are as extreme
    assert sign_flip_p(np.linspace(0.1, 1.0, 10)) == pytest.approx(2 / 2**10)
    assert sign_flip_p(np.zeros(4)) == 1.0 and np.isnan(sign_flip_p(np.array([])))
    assert sign_flip_p(np.array([0.7])) == enumerated_p(np.array([0.7])) == 1.0


def test_planted_effect_is_found() -> None:
    rng = np.random.default_rng(1)
    clusters = {f"t{i}": list(0.1 + rng.normal(0, 0.03) + rng.normal(0, 0.05, 3)) for i in range(10)}
    row = paired_test(long_frame(clusters), "a", "b", "strategy", "value", ["task", "seed"], "task")
    assert row["n_clusters"] == 10 and row["n_runs"] == 30
    assert row["p"] < 0.01 and row["ci_lo"] > 0 and row["ci_lo"] < row["mean_diff"] < row["ci_hi"]
    assert row["mean_diff"] == pytest.approx(np.mean([np.mean(v) for v in clusters.values()]))


def test_null_is_rejected_at_the_nominal_rate_and_run_level_is_not() -> None:
    """12 clusters of 5 correlated runs each (cluster effect sd 1, run noise sd 0.5), true mean 0:
    the cluster test rejects about 5% of 400 data sets; the run-level Wilcoxon far more."""
    rng = np.random.default_rng(0)
    cluster_p, run_p = [], []
    for _ in range(400):
        runs = rng.normal(0, 1, (12, 1)) + rng.normal(0, 0.5, (12, 5))
        cluster_p.append(sign_flip_p(runs.mean(axis=1)))
        from scipy.stats import wilcoxon

        run_p.append(wilcoxon(runs.ravel()).pvalue)
    rate = np.mean(np.array(cluster_p) < 0.05)
    assert 0.025 <= rate <= 0.08, rate  # binomial(400, 0.05): 99.9% within this range
    assert np.mean(np.array(run_p) < 0.05) > 0.2


def test_pseudo_replicated_seeds_do_not_inflate_significance() -> None:
    rng = np.random.default_rng(3)
    clusters = {f"t{i}": list(rng.normal(0.1, 0.2, 2)) for i in range(6)}
    frame = long_frame(clusters)
    copies = pd.concat([frame.assign(seed=frame["seed"] + 100 * c) for c in range(8)], ignore_index=True)
    one = paired_test(frame, "a", "b", "strategy", "value", ["task", "seed"], "task")
    many = paired_test(copies, "a", "b", "strategy", "value", ["task", "seed"], "task")
    for key in ("n_clusters", "mean_diff", "ci_lo", "ci_hi", "p"):
        assert many[key] == pytest.approx(one[key]), key
    assert one["p"] > 0.2 and many["n_runs"] == 8 * one["n_runs"]
    assert one["p_run"] > 0.2 and many["p_run"] < 0.05  # what run-level pseudo-replication does


def test_holm_by_hand_and_hidden_comparisons() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.01, 0.04, 0.03], hidden=1) == pytest.approx([0.04, 0.09, 0.09])
    adjusted = holm([0.5, np.nan, 0.6])
    assert np.isnan(adjusted[1]) and adjusted[0] == adjusted[2] == 1.0


def test_cluster_ci_and_a_table_of_tests() -> None:
    assert all(np.isnan(cluster_ci(np.array([1.0, 2.0]))))
    assert cluster_ci(np.full(5, 0.2)) == (0.2, 0.2)
    frame = pd.concat(
        [
            long_frame({"x": [0.1, 0.2], "y": [0.3, 0.1], "z": [0.2, 0.2]}),
            long_frame({"x": [0.0]}).assign(strategy="c"),
        ]
    )
    tests = paired_tests(
        frame, [("a", "b"), ("a", "missing"), ("c", "b")], "strategy", "value", ["task", "seed"], "task"
    )
    assert list(tests["a"] + tests["b"]) == ["ab", "cb"] and tests["cluster"].iloc[0] == "task"
    assert tests.loc[1, "n_clusters"] == 1 and tests.loc[1, "p"] == 1.0
    assert tests["p_holm"].iloc[0] == pytest.approx(min(1.0, 2 * tests["p"].iloc[0]))
