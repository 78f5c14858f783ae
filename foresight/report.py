"""Results tables of strategy comparisons and tracked runs, from results in memory or from MLflow.

Strategy tables (`compare`, the illusion and foresight studies): held-out accuracy after
fine-tuning per strategy, with its mean and 95% t-interval over seeds, and paired t-tests
(scipy.stats.ttest_rel) of accuracy a - b over the (task, seed) pairs both strategies ran.

Evolution tables (tracked runs, the evolution study): per task, the circuit metrics at the last
checkpoint of each run (the tracker's `cd_start_head` and so on, which MLflow holds under the
names of `foresight.mlflow_ui`, e.g. `{task}/circuit_distance/to_start/heads`), mean and
standard deviation over runs; Circuit Conflict is the mean over the other tracked tasks.

`report(experiment)` rebuilds the right table from an MLflow experiment (`foresight report`).
"""

from __future__ import annotations

from collections.abc import Sequence

import mlflow
import numpy as np
import pandas as pd
from scipy.stats import t, ttest_rel

from foresight.mlflow_ui import CONFLICT, mlflow_name

STRATEGY_COLUMNS = ["task", "strategy", "seed", "accuracy_before", "accuracy_after", "trainable_parameters"]
PAIRS = (
    ("predictive", "last"),  # forecast vs re-localizing once at the same step
    ("predictive-dynamic", "dynamic"),  # forecast vs re-localizing at every re-selection
    ("predictive", "static"),
    ("predictive", "random"),
    ("predictive-dynamic", "static"),
    ("predictive-dynamic", "random"),
    ("last", "static"),
    ("last", "random"),
    ("dynamic", "static"),
    ("dynamic", "random"),
    ("oracle", "static"),
    ("static", "random"),
    ("static", "free"),
    ("random", "free"),
)
SMALL_N = 5
EVOLUTION_METRICS = (
    "cd_start_head",
    "cd_start_mlp",
    "cd_prev_head",
    "cd_prev_mlp",
    "cs_start",
    "cs_start_spearman",
    "accuracy",
)


class ReportError(ValueError):
    """An MLflow experiment that is missing or holds no runs a report can be built from."""


def strategy_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per strategy (in order of first appearance) of a frame with STRATEGY_COLUMNS (and
    optionally wall_s): n, accuracy before, accuracy after as mean and 95% t-interval (NaN for
    n = 1), trainable parameters and wall time (means).

    The interval is intersected with [0, 1]: an accuracy's mean lies there, so the clipped
    interval covers it whenever the t-interval does (with 2 seeds it is often all of [0, 1])."""
    rows = []
    for strategy, group in frame.groupby("strategy", sort=False):
        acc = group["accuracy_after"].to_numpy(float)
        n = len(acc)
        half = t.ppf(0.975, n - 1) * acc.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
        row = {
            "strategy": strategy,
            "n": n,
            "accuracy_before": group["accuracy_before"].mean(),
            "accuracy": acc.mean(),
            "ci_low": float(np.clip(acc.mean() - half, 0.0, 1.0)),
            "ci_high": float(np.clip(acc.mean() + half, 0.0, 1.0)),
            "trainable_parameters": group["trainable_parameters"].mean(),
        }
        if "wall_s" in group:
            row["wall_s"] = group["wall_s"].mean()
        rows.append(row)
    return pd.DataFrame(rows)


def strategy_tests(frame: pd.DataFrame, pairs: Sequence[tuple[str, str]] = PAIRS) -> pd.DataFrame:
    """Paired t-tests of accuracy a - b over the (task, seed) pairs both strategies ran, for
    each pair of `pairs` where both ran; p is NaN with fewer than 2 pairs or zero variance."""
    keys = [c for c in ("task", "seed") if c in frame]
    acc = frame.pivot_table(index=keys, columns="strategy", values="accuracy_after", aggfunc="mean")
    rows = []
    for a, b in pairs:
        if a in acc and b in acc:
            both = acc[[a, b]].dropna()
            diff = both[a] - both[b]
            test = ttest_rel(both[a], both[b]) if len(both) > 1 and diff.std() > 0 else None
            rows.append(
                {
                    "a": a,
                    "b": b,
                    "n": len(both),
                    "mean_diff": float(diff.mean()),
                    "t": float(test.statistic) if test else float("nan"),
                    "p": float(test.pvalue) if test else float("nan"),
                }
            )
    return pd.DataFrame(rows, columns=["a", "b", "n", "mean_diff", "t", "p"])


def _markdown(frame: pd.DataFrame) -> str:
    """`frame` as a markdown table, 4 significant digits; whole-number columns (parameter counts)
    as integers, not in exponent notation."""
    whole = {
        c: "int64"
        for c in frame.columns
        if pd.api.types.is_float_dtype(frame[c]) and frame[c].notna().all() and (frame[c] % 1 == 0).all()
    }
    return frame.astype(whole).to_markdown(index=False, floatfmt=".4g")


def verdict(tests: pd.DataFrame, alpha: float = 0.05) -> list[str]:
    """One plain sentence per test: a beats b, b beats a (mean: the winner's advantage, > 0), or
    no significant difference (mean: a - b)."""
    lines = []
    for row in tests.itertuples(index=False):
        if np.isnan(row.p) or row.p >= alpha:
            lines.append(
                f"{row.a} vs {row.b}: no significant difference (mean {row.mean_diff:+.3f}, n = {row.n})"
            )
        else:
            winner, loser = (row.a, row.b) if row.mean_diff > 0 else (row.b, row.a)
            advantage = abs(row.mean_diff)
            lines.append(f"{winner} beats {loser} (mean {advantage:+.3f}, p = {row.p:.2g}, n = {row.n})")
    return lines


def comparison_markdown(task: str, table: pd.DataFrame, tests: pd.DataFrame) -> str:
    """The report of one task's comparison: the strategy table and the paired tests."""
    parts = [f"# Strategy comparison: {task}", "", "Held-out accuracy (95% t-interval over seeds):", ""]
    parts += [_markdown(table), "", "Paired t-tests over seeds (accuracy a - b):", ""]
    parts.append(_markdown(tests) if len(tests) else "No pair of the tested strategies ran.")
    if len(tests) and tests["n"].min() < SMALL_N:
        parts += ["", f"Note: n = {tests['n'].min()} seeds is small; these tests have little power."]
    return "\n".join(parts) + "\n"


def strategy_markdown(frame: pd.DataFrame, title: str) -> str:
    """The study report: mean held-out accuracy per task and strategy, the pooled paired tests
    over (task, seed) with a plain verdict, then each task's interval table."""
    order = list(dict.fromkeys(frame["strategy"]))
    means = frame.pivot_table(index="task", columns="strategy", values="accuracy_after", aggfunc="mean")
    means = means[order].reset_index()
    before = frame.groupby("task")["accuracy_before"].mean().rename("before")
    means = means.merge(before, on="task")[["task", "before", *order]]
    tests = strategy_tests(frame)
    parts = [f"# {title}", "", "Mean held-out accuracy after fine-tuning (before: the base model):", ""]
    parts += [_markdown(means), ""]
    if "wall_s" in frame:
        wall = frame.groupby("strategy", sort=False)["wall_s"].agg(["mean", "count"]).loc[order]
        wall = wall.rename(columns={"mean": "wall_s per run", "count": "runs"}).reset_index()
        parts += [
            "Wall time per run (fine-tuning, selection and forecasting; not the oracle's reference):",
            "",
        ]
        parts += [_markdown(wall), ""]
    parts += ["Paired t-tests over (task, seed) pairs, accuracy a - b:", ""]
    parts += [_markdown(tests), "", *(f"- {line}" for line in verdict(tests)), ""]
    for task, group in frame.groupby("task"):
        parts += [f"## {task}", "", _markdown(strategy_summary(group)), ""]
        parts += [f"- {line}" for line in verdict(strategy_tests(group))] + [""]
    return "\n".join(parts)


def evolution_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, task) of `mlflow.search_runs` output holding tracked-run metrics:
    the EVOLUTION_METRICS at the run's last logged step and cc, the mean conflict with the
    other tracked tasks."""
    rows = []
    marker = mlflow_name("", "cd_start_head")
    tasks = sorted({c[len("metrics.") : -len(marker)] for c in runs if c.endswith(marker)})
    for _, run in runs.iterrows():
        for task in tasks:
            value = run.get(f"metrics.{mlflow_name(task, 'cd_start_head')}")
            if value is None or pd.isna(value):
                continue
            row = {"run": run["run_id"], "task": task}
            row |= {m: run.get(f"metrics.{mlflow_name(task, m)}", np.nan) for m in EVOLUTION_METRICS}
            prefix = f"metrics.{task}/{CONFLICT}"
            conflicts = [run[c] for c in runs if c.startswith(prefix) and pd.notna(run[c])]
            row["cc"] = float(np.mean(conflicts)) if conflicts else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


def evolution_markdown(frame: pd.DataFrame, title: str) -> str:
    """Per task: mean and sd over runs of each metric at the last checkpoint; then the median
    over tasks of those means for CD (heads, MLPs), CS and CC."""
    metrics = [*EVOLUTION_METRICS, "cc"]
    grouped = frame.groupby("task")[metrics]
    mean, sd = grouped.mean(), grouped.std(ddof=1)
    table = pd.DataFrame(
        {
            m: [
                f"{a:.3f}" + (f" ± {b:.3f}" if pd.notna(b) else "")
                for a, b in zip(mean[m], sd[m], strict=True)
            ]
            for m in metrics
        },
        index=mean.index,
    )
    table.insert(0, "runs", frame.groupby("task").size())
    median = mean.median()
    parts = [f"# {title}", "", "At the last checkpoint, mean ± sd over runs (seeds):", ""]
    parts += [table.reset_index().to_markdown(index=False, disable_numparse=True), ""]
    parts += [
        f"Median over tasks: CD to step 0 of heads {median['cd_start_head']:.3f}, of MLPs "
        f"{median['cd_start_mlp']:.3f}; CS to step 0 {median['cs_start']:.3f}; CC {median['cc']:.3f} "
        "(CS is a ratio of faithfulnesses: it is unbounded where the new circuit's is near 0).",
        "",
    ]
    return "\n".join(parts)


def experiment_runs(experiment: str) -> pd.DataFrame:
    """`mlflow.search_runs` of experiment `experiment`, oldest run first."""
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        raise ReportError(f"no MLflow experiment {experiment!r} at {mlflow.get_tracking_uri()}")
    return mlflow.search_runs([found.experiment_id], max_results=50_000).iloc[::-1]


def strategy_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """STRATEGY_COLUMNS (and wall_s) of the child runs of `compare` in `mlflow.search_runs` output
    (oldest first); a (task, strategy, seed) that ran more than once keeps its latest run."""
    if "tags.strategy" not in runs:
        return pd.DataFrame(columns=[*STRATEGY_COLUMNS, "wall_s"])
    runs = runs[runs["tags.strategy"].notna() & runs["metrics.accuracy_after"].notna()]
    return (
        pd.DataFrame(
            {
                "task": runs["tags.task"],
                "strategy": runs["tags.strategy"],
                "seed": runs["tags.seed"].astype(int),
                "accuracy_before": runs["metrics.accuracy_before"],
                "accuracy_after": runs["metrics.accuracy_after"],
                "trainable_parameters": runs["params.trainable_parameters"].astype(float),
                "wall_s": runs["metrics.wall_s"],
            }
        )
        .drop_duplicates(["task", "strategy", "seed"], keep="last")
        .sort_values(["task", "seed"], kind="stable")
    )


def report(experiment: str) -> str:
    """The markdown table of an MLflow experiment: strategy comparisons if it holds `compare`
    child runs, else the evolution table of its tracked runs."""
    runs = experiment_runs(experiment)
    strategies = strategy_frame(runs)
    if len(strategies):
        return strategy_markdown(strategies, f"Strategy comparison ({experiment})")
    evolution = evolution_frame(runs)
    if len(evolution):
        return evolution_markdown(evolution, f"Circuit evolution ({experiment})")
    raise ReportError(f"MLflow experiment {experiment!r} holds no strategy-comparison or tracked runs")
