"""Results tables of strategy comparisons and tracked runs, from results in memory or from MLflow.

Strategy tables (`compare`, the illusion and foresight studies): held-out accuracy after
fine-tuning per strategy, with its mean and 95% t-interval over seeds, and cluster-level paired
tests (`foresight.stats`: the task is the unit, Holm over the table's pairs) of accuracy a - b
over the (task, seed) runs both strategies ran; the run-level p is a secondary column.

Evolution tables (tracked runs, the evolution study): per task, the circuit metrics at the last
checkpoint of each run (the tracker's `cd_start_head` and so on, which MLflow holds under the
names of `foresight.mlflow_ui`, e.g. `{task}/circuit_distance/to_start/heads`), mean and
standard deviation over runs; Circuit Conflict is the mean over the other tracked tasks.

`report(experiment)` rebuilds the right table from an MLflow experiment (`foresight report`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from scipy.stats import t

from foresight import stats
from foresight.metric_names import CONFLICT, FINAL, mlflow_name

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
TERMINAL_TEST_COLUMNS = ["a", "b", "n", "mean_diff", "p", "p_holm"]  # what fits 80 columns
PER_RUN_STRATEGY_COLUMNS = [
    "run", "task", "family", "seed", "regime", "strategy", "value", "accuracy_before", "trainable_parameters",
    "wall_s",
]  # fmt: skip
SMALL_N = 5
FLOOR_METRICS = ("migrated_head", "migrated_mlp", "cd_floor_p95_head", "cd_floor_p95_mlp")
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
    """Cluster-level paired tests (`foresight.stats.paired_tests`) of accuracy a - b over the
    (task, seed) runs both strategies ran, for each pair of `pairs` where both ran: the task is
    the cluster when the frame holds several tasks, else the seed (one task's comparison).
    Columns a, b, cluster, n_clusters, n (runs), mean_diff (mean of the cluster means), ci_lo,
    ci_hi, p (exact sign-flip), p_holm (Holm over the rows), p_run (run-level Wilcoxon)."""
    keys = [c for c in ("task", "seed") if c in frame]
    cluster = "task" if "task" in frame and frame["task"].nunique() > 1 else "seed"
    tests = stats.paired_tests(frame, pairs, "strategy", "accuracy_after", keys, cluster)
    columns = ["a", "b", "cluster", "n_clusters", "n", "mean_diff", "ci_lo", "ci_hi", "p", "p_holm", "p_run"]
    return tests.rename(columns={"n_runs": "n"})[columns]


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
    """One plain sentence per test of `strategy_tests`, judged on the Holm-adjusted cluster-level
    p: a beats b, b beats a (mean: the winner's advantage, > 0), or no significant difference
    (mean: a - b); each names its unit (n clusters of `cluster`)."""
    lines = []
    for row in tests.itertuples(index=False):
        unit = f"{row.n_clusters} {row.cluster}s, {row.n} runs"
        if np.isnan(row.p_holm) or row.p_holm >= alpha:
            lines.append(
                f"{row.a} vs {row.b}: no significant difference (mean {row.mean_diff:+.3f}, "
                f"p_holm = {row.p_holm:.2g}, {unit})"
            )
        else:
            winner, loser = (row.a, row.b) if row.mean_diff > 0 else (row.b, row.a)
            advantage = abs(row.mean_diff)
            lines.append(f"{winner} beats {loser} (mean {advantage:+.3f}, p_holm = {row.p_holm:.2g}, {unit})")
    return lines


def comparison_markdown(task: str, table: pd.DataFrame, tests: pd.DataFrame) -> str:
    """The report of one task's comparison: the strategy table and the paired tests."""
    parts = [f"# Strategy comparison: {task}", "", "Held-out accuracy (95% t-interval over seeds):", ""]
    parts += [_markdown(table), "", "Paired tests over seeds (accuracy a - b; exact sign-flip p, Holm):", ""]
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
    parts += [
        "Paired tests of accuracy a - b with the task as the unit: mean over tasks of the mean "
        "difference over seeds, percentile bootstrap 95% interval over tasks, exact sign-flip p, "
        "Holm over the table's pairs (p_holm, which the verdicts use); p_run: run-level Wilcoxon, "
        "secondary:",
        "",
    ]
    parts += [_markdown(tests), "", *(f"- {line}" for line in verdict(tests)), ""]
    for task, group in frame.groupby("task"):
        parts += [f"## {task}", "", _markdown(strategy_summary(group)), ""]
        parts += ["Within the task (the seed as the unit, Holm over its pairs):", ""]
        parts += [f"- {line}" for line in verdict(strategy_tests(group))] + [""]
    return "\n".join(parts)


def evolution_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, task) of `mlflow.search_runs` output holding tracked-run metrics:
    the EVOLUTION_METRICS and FLOOR_METRICS (NaN for runs tracked without a noise floor) at the
    run's last logged step and cc, the mean conflict with the other tracked tasks."""
    rows = []
    marker = mlflow_name("", "cd_start_head")
    tasks = sorted({c[len("metrics.") : -len(marker)] for c in runs if c.endswith(marker)})
    for _, run in runs.iterrows():
        for task in tasks:
            value = run.get(f"metrics.{mlflow_name(task, 'cd_start_head')}")
            if value is None or pd.isna(value):
                continue
            row = {"run": run["run_id"], "task": task}
            row |= {
                m: run.get(f"metrics.{mlflow_name(task, m)}", np.nan)
                for m in (*EVOLUTION_METRICS, *FLOOR_METRICS)
            }
            prefix = f"metrics.{task}/{CONFLICT.name}"
            conflicts = [run[c] for c in runs if c.startswith(prefix) and pd.notna(run[c])]
            row["cc"] = float(np.mean(conflicts)) if conflicts else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


FLOOR_COLUMNS = ("task", "kind", "cd")


def floor_markdown(frame: pd.DataFrame, title: str) -> str:
    """Per task and kind (FLOOR_COLUMNS: one row per pair of resampled circuits, its Circuit
    Distance): the floor's pairs, median and 95th percentile (`NoiseFloor.cd_p95`'s definition),
    above which a migration counts."""
    grouped = frame.groupby(["task", "kind"], sort=False)["cd"]
    table = pd.DataFrame(
        {
            "pairs": grouped.size(),
            "CD floor median": grouped.median(),
            "CD floor p95": grouped.agg(lambda cd: float(np.percentile(cd, 95))),
        }
    )
    return (
        f"# {title}\n\nCircuit Distance between every two bootstrap-resampled circuits of one model, "
        "per task and kind; a CD above the 95th percentile counts as a migration.\n\n"
        + table.reset_index().to_markdown(index=False, floatfmt=".3f")
        + "\n"
    )


def evolution_markdown(frame: pd.DataFrame, title: str) -> str:
    """Per task: mean and sd over runs of each metric at the last checkpoint, and, for runs
    tracked with a noise floor, its mean 95th percentile and how many runs migrated above it
    (CD to step 0 > the run's floor); then the median over tasks of the means of CD (heads,
    MLPs), CS and CC."""
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
    floored = frame.dropna(subset=["migrated_head"]) if "migrated_head" in frame else frame.iloc[:0]
    for kind in ("head", "mlp"):
        if len(floored):
            g = floored.groupby("task")
            table[f"cd_floor_p95_{kind}"] = g[f"cd_floor_p95_{kind}"].mean().map(lambda v: f"{v:.3f}")
            table[f"migrated_{kind}"] = [
                f"{int(part[f'migrated_{kind}'].sum())}/{len(part)}" for _, part in g
            ]
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
    """run (the MLflow run id), STRATEGY_COLUMNS and wall_s of the child runs of `compare` in
    `mlflow.search_runs` output (oldest first); a (task, strategy, seed) that ran more than once
    keeps its latest run."""
    if "tags.strategy" not in runs:
        return pd.DataFrame(columns=["run", *STRATEGY_COLUMNS, "wall_s"])
    final = {key: f"metrics.{measure.name}" for key, measure in FINAL.items()}
    runs = runs[runs["tags.strategy"].notna() & runs[final["accuracy_after"]].notna()]
    return (
        pd.DataFrame(
            {
                "run": runs["run_id"],
                "task": runs["tags.task"],
                "strategy": runs["tags.strategy"],
                "seed": runs["tags.seed"].astype(int),
                **{key: runs[column] for key, column in final.items()},
                "trainable_parameters": runs["params.trainable_parameters"].astype(float),
            }
        )
        .drop_duplicates(["task", "strategy", "seed"], keep="last")
        .sort_values(["task", "seed"], kind="stable")
    )


def per_run_csv(frame: pd.DataFrame, path: Path, family: Callable[[str], str], regime: str) -> Path:
    """Write a strategy frame's per-run results as CSV (columns PER_RUN_STRATEGY_COLUMNS: value
    is the held-out accuracy after fine-tuning) to `path`; `family` maps a task to its family."""
    out = frame.assign(family=frame["task"].map(family), regime=regime, value=frame["accuracy_after"])
    path.parent.mkdir(parents=True, exist_ok=True)
    out.reindex(columns=PER_RUN_STRATEGY_COLUMNS).to_csv(path, index=False)
    return path


def read_per_run_csv(path: Path) -> pd.DataFrame:
    """A strategy frame (STRATEGY_COLUMNS, wall_s) from a `per_run_csv` file, in file order."""
    frame = pd.read_csv(path)
    missing = sorted(set(PER_RUN_STRATEGY_COLUMNS) - set(frame.columns))
    if missing:
        raise ReportError(f"{path}: not a per-run strategy CSV (missing columns {', '.join(missing)})")
    return frame.assign(accuracy_after=frame["value"])


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
