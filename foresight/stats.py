"""Paired comparisons with the cluster as the unit, corrected for multiplicity: the one home of
Foresight's statistics.

Runs of one task (its seeds, its regimes) are not independent, nor are the near-copy tasks of one
family. A paired comparison of a and b therefore (1) pairs the runs both ran (same `unit`: the
run, or (task, seed)), (2) averages the differences a - b within each cluster (the task, or the
family), and (3) tests the mean of the cluster means against 0:

- p: two-sided sign-flip permutation test (`scipy.stats.permutation_test`, paired samples, the
  mean as the statistic); exact, over all 2^n sign patterns, when n_resamples >= 2^n clusters.
- ci_lo, ci_hi: percentile bootstrap 95% interval of the mean over clusters
  (`scipy.stats.bootstrap`), NaN with fewer than 3 clusters.
- p_run: the run-level Wilcoxon signed-rank p, a secondary column only (it treats every run as
  independent).
- p_holm: Holm's step-down correction over every row of one table, plus the comparisons that
  were made and not shown (`hidden`, e.g. the models a best one was picked from).

Duplicating runs inside a cluster changes no cluster mean, so it cannot inflate significance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import bootstrap, permutation_test, wilcoxon

TEST_COLUMNS = ["a", "b", "n_clusters", "n_runs", "mean_diff", "ci_lo", "ci_hi", "p", "p_run"]
N_RESAMPLES = 9999


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def sign_flip_p(diffs: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = 0) -> float:
    """Two-sided p of the mean of `diffs` (one value per cluster) under random sign flips; exact
    when 2^len(diffs) <= n_resamples; NaN for no values, 1.0 when every value is 0 or there is
    one cluster (both of its sign patterns are as extreme as the observed one)."""
    diffs = np.asarray(diffs, dtype=float)
    if len(diffs) == 0:
        return math.nan
    if len(diffs) == 1 or not diffs.any():
        return 1.0
    result = permutation_test(
        (diffs,),
        _mean,
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_resamples,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return float(result.pvalue)


def cluster_ci(diffs: np.ndarray, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean of `diffs` (one value per cluster); NaNs
    with fewer than 3 clusters; (v, v) when every value is v."""
    diffs = np.asarray(diffs, dtype=float)
    if len(diffs) < 3:
        return math.nan, math.nan
    if np.all(diffs == diffs[0]):
        return float(diffs[0]), float(diffs[0])
    result = bootstrap(
        (diffs,),
        _mean,
        vectorized=True,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def holm(pvalues: Sequence[float], hidden: int = 0) -> np.ndarray:
    """Holm-adjusted p-values for a family of len(pvalues) + `hidden` tests (the hidden ones
    counted as made, with p unknown: the conservative bound treats them as ranked first); NaNs
    stay NaN and are not counted."""
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(len(p), np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = len(valid) + hidden
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def cluster_differences(
    frame: pd.DataFrame, a: str, b: str, by: str, value: str, unit: Sequence[str], cluster: str
) -> tuple[pd.Series, pd.Series]:
    """Paired differences value(a) - value(b) over the units both ran (index `unit`), and their
    mean per cluster (index: cluster). `frame` is long: one row per (by, unit), with `cluster`
    constant within a unit."""
    keys = list(dict.fromkeys([*unit, cluster]))
    wide = frame.pivot_table(index=keys, columns=by, values=value, aggfunc="mean")
    if a not in wide or b not in wide:
        empty = pd.Series(dtype=float)
        return empty, empty
    both = wide[[a, b]].dropna()
    diff = both[a] - both[b]
    return diff, diff.groupby(level=cluster).mean()


def paired_test(
    frame: pd.DataFrame,
    a: str,
    b: str,
    by: str,
    value: str,
    unit: Sequence[str],
    cluster: str,
    seed: int = 0,
) -> dict:
    """One row of TEST_COLUMNS for a - b (see the module doc); mean_diff is the mean of the
    cluster means."""
    diff, per_cluster = cluster_differences(frame, a, b, by, value, unit, cluster)
    values = per_cluster.to_numpy(dtype=float)
    nonzero = diff[diff != 0].to_numpy(dtype=float)
    lo, hi = cluster_ci(values, seed=seed)
    return {
        "a": a,
        "b": b,
        "n_clusters": len(values),
        "n_runs": len(diff),
        "mean_diff": float(values.mean()) if len(values) else math.nan,
        "ci_lo": lo,
        "ci_hi": hi,
        "p": sign_flip_p(values, seed=seed),
        "p_run": float(wilcoxon(nonzero).pvalue) if len(nonzero) else math.nan,
    }


def paired_tests(
    frame: pd.DataFrame,
    pairs: Sequence[tuple[str, str]],
    by: str,
    value: str,
    unit: Sequence[str],
    cluster: str,
    hidden: int = 0,
    seed: int = 0,
) -> pd.DataFrame:
    """TEST_COLUMNS and p_holm for each pair (a, b) of `pairs` where both ran, Holm over these
    rows and `hidden` more comparisons; column `cluster` names the unit of the test."""
    rows = [paired_test(frame, a, b, by, value, unit, cluster, seed) for a, b in pairs]
    tests = pd.DataFrame([r for r in rows if r["n_runs"] > 0], columns=TEST_COLUMNS)
    tests["p_holm"] = holm(tests["p"].to_numpy(), hidden)
    return tests.assign(cluster=cluster)
