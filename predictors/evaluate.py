"""Leave-one-task-out (or leave-one-family-out) evaluation of forecasters, summaries with
bootstrap intervals, MLflow logging.

For each held-out task, every forecaster is fitted on the runs of the other tasks and predicts
the held-out task's runs at the problem's prefix; `metrics.run_metrics` scores each run. With
`groups` (task -> family, e.g. `foresight.tasks.task_family`), the held-out unit is a whole
family: no near-copy of a held-out task is trained on, and column `task` names the family.
Summary: per (model, held-out task or family) and overall ("all") mean of each metric, with a
seeded bootstrap 95%
interval over runs ({metric}_lo, {metric}_hi), and gap_closed = (J - J_static) / (1 - J_static)
of the overall mean Jaccard.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from foresight import stats
from foresight.mlflow_log import SafeLogger, ended, get_or_create_experiment, open_run
from predictors.base import Forecaster
from predictors.problem import ForecastProblem, Trajectory, observe, target_scores, valid_prefixes
from predictors.registry import make_forecaster
from predictors.scoring import METRICS, run_metrics

ALL = "all"
# a held-out run's metrics: its task, family, training seed and regime, the model, its fit seed,
# the prefix k and the circuit size n
PER_RUN_COLUMNS = ["run", "task", "family", "seed", "regime", "model", "fit_seed", "k", "n", *METRICS]
Factory = Callable[[ForecastProblem], Forecaster]


@dataclass(frozen=True)
class Evaluation:
    """per_run: one row per (model, held-out task, run) with METRICS; summary: see module doc."""

    problem: ForecastProblem
    per_run: pd.DataFrame
    summary: pd.DataFrame

    @property
    def markdown(self) -> str:
        """The summary as a markdown table."""
        return markdown_table(self.summary, self.problem)


def _factories(models: Sequence[str] | Mapping[str, Factory], seed: int) -> dict[str, Factory]:
    if isinstance(models, Mapping):
        return dict(models)
    return {m: (lambda p, m=m: make_forecaster(m, p, seed)) for m in models}


def leave_one_task_out(
    runs: Sequence[Trajectory],
    problem: ForecastProblem,
    models: Sequence[str] | Mapping[str, Factory],
    seed: int = 0,
    groups: Callable[[str], str] | None = None,
) -> pd.DataFrame:
    """Per-run metrics (columns model, task, run, *METRICS) of each model on each held-out task
    (with `groups`: each held-out group of tasks, named in column task)."""
    group = groups or (lambda task: task)
    tasks = sorted({group(r.task) for r in runs})
    if len(tasks) < 2:
        raise ValueError(f"leave-one-out needs at least 2 tasks or groups, got {tasks}")
    rows = []
    for name, factory in _factories(models, seed).items():
        for task in tasks:
            test = [r for r in runs if group(r.task) == task and valid_prefixes(r, problem, [problem.prefix])]
            if not test:
                continue
            forecaster = factory(problem).fit([r for r in runs if group(r.task) != task])
            for run in test:
                predicted = forecaster.predict(observe(run, problem))
                metrics = run_metrics(predicted, target_scores(run, problem), problem.circuit_size)
                rows.append({"model": name, "task": task, "run": run.name, **metrics})
    return pd.DataFrame(rows, columns=["model", "task", "run", *METRICS])


def regime_of(rows: pd.DataFrame) -> str:
    """The fine-tuning regime of one run's rows: "free" (full-parameter SFT of every component)
    or "{regime_mode}-{regime_strategy}" (e.g. "lora-static")."""
    mode, strategy = str(rows["regime_mode"].iloc[0]), str(rows["regime_strategy"].iloc[0])
    return "free" if strategy == "free" and mode == "full" else f"{mode}-{strategy}"


def run_metadata(runs: Sequence[Trajectory]) -> pd.DataFrame:
    """One row per run: run, task, family (`foresight.tasks.task_family`), seed (the run's
    training seed) and regime (`regime_of`)."""
    from foresight.tasks import task_family

    return pd.DataFrame(
        [
            {
                "run": r.name,
                "task": r.task,
                "family": task_family(r.task),
                "seed": int(r.rows["seed"].iloc[0]),
                "regime": regime_of(r.rows),
            }
            for r in runs
        ]
    )


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Percentile 95% interval of the mean of `values` (NaNs dropped) over `n_boot` resamples."""
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return math.nan, math.nan
    means = values[np.random.default_rng(seed).integers(0, len(values), (n_boot, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarize(per_run: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Rows (model, task) for every held-out task and ALL; columns n_runs, metric, metric_lo,
    metric_hi for each of METRICS, gap_closed (ALL rows; NaN without a static row)."""
    rows = []
    for model, frame in per_run.groupby("model", sort=False):
        for task, part in [*frame.groupby("task"), (ALL, frame)]:
            row: dict[str, Any] = {"model": model, "task": task, "n_runs": len(part)}
            for metric in METRICS:
                values = part[metric].to_numpy(dtype=float)
                row[metric] = float(np.nanmean(values)) if (~np.isnan(values)).any() else math.nan
                row[f"{metric}_lo"], row[f"{metric}_hi"] = bootstrap_ci(values, n_boot, seed)
            rows.append(row)
    summary = pd.DataFrame(rows)
    overall = summary["task"] == ALL
    static = summary.loc[overall & (summary["model"] == "static"), "jaccard"]
    j0 = float(static.iloc[0]) if len(static) else math.nan
    summary["gap_closed"] = np.where(
        overall, (summary["jaccard"] - j0) / (1 - j0) if j0 < 1 else math.nan, math.nan
    )
    return summary


def paired_tests(
    per_run: pd.DataFrame, pairs: Sequence[tuple[str, str]], cluster: str = "family", hidden: int = 0
) -> pd.DataFrame:
    """Cluster-level paired tests (`foresight.stats.paired_tests`) of Jaccard(a) - Jaccard(b)
    over the held-out runs both models were scored on, for each (a, b) of `pairs`; the unit of
    the test is `cluster` (a column of `per_run`: family, task), Holm over the rows and
    `hidden` comparisons more."""
    return stats.paired_tests(per_run, pairs, "model", "jaccard", ["run"], cluster, hidden)


def comparison_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per model (formatted strings): mean Jaccard [95% CI] overall, the other metrics'
    overall means, gap closed, and the mean Jaccard per held-out task ("J {task}")."""
    overall = summary[summary["task"] == ALL].set_index("model")
    table = pd.DataFrame(index=overall.index)
    table["Jaccard@n [95% CI]"] = [
        f"{r.jaccard:.3f} [{r.jaccard_lo:.3f}, {r.jaccard_hi:.3f}]" for r in overall.itertuples()
    ]
    names = {
        "f1": "F1@n",
        "precision_at_n": "P@n",
        "auroc": "AUROC",
        "average_precision": "AP",
        "spearman": "Spearman",
        "gap_closed": "gap closed",
    }
    for column, label in names.items():
        table[label] = overall[column].map(lambda v: f"{v:.3f}")
    per_task = summary[summary["task"] != ALL].pivot(index="model", columns="task", values="jaccard")
    for task in per_task.columns:
        table[f"J {task}"] = per_task[task].reindex(table.index).map(lambda v: f"{v:.3f}")
    return table


def markdown_table(summary: pd.DataFrame, problem: ForecastProblem) -> str:
    """`comparison_frame(summary)` as a markdown table under a one-line problem title."""
    title = (
        f"prefix k={problem.prefix}, horizon {problem.horizon}, circuit size n={problem.circuit_size}, "
        f"level {problem.level}"
    )
    return f"{title}\n\n{comparison_frame(summary).reset_index().to_markdown(index=False)}\n"


def evaluate(
    runs: Sequence[Trajectory],
    problem: ForecastProblem,
    models: Sequence[str] | Mapping[str, Factory],
    seed: int = 0,
    n_boot: int = 1000,
    groups: Callable[[str], str] | None = None,
) -> Evaluation:
    """Leave-one-task-out (with `groups`: leave-one-group-out) evaluation and its summary."""
    per_run = leave_one_task_out(runs, problem, models, seed, groups)
    return Evaluation(problem, per_run, summarize(per_run, n_boot, seed))


def log_evaluation(result: Evaluation, experiment: str, run_dir: Path) -> list[str]:
    """A parent run `evaluation-k{prefix}-h{horizon}-n{size}` of experiment `experiment` (in the
    current tracking URI) with one child run per model: params (prefix, horizon, circuit_size,
    level, model, n_runs), overall metrics (NaNs skipped) and the markdown table as artifact
    `comparison.md` (also on the parent). The writes go through `SafeLogger` (queued under
    `run_dir` if the server goes away). Returns the child run ids (placeholders while queued)."""
    p = result.problem
    suffix = f"k{p.prefix}-h{p.horizon}-n{p.circuit_size}"
    experiment_id = get_or_create_experiment(experiment)
    parent_id = open_run(experiment, f"evaluation-{suffix}", p.to_dict())
    parent = SafeLogger(parent_id, run_dir, experiment_id=experiment_id)
    report = run_dir / "comparison.md"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(result.markdown)
    ids = []
    with ended(parent):
        parent.log_artifact(report)
        for row in result.summary[result.summary["task"] == ALL].to_dict("records"):
            with ended(parent.new_run(f"{row['model']}-{suffix}", {"model": row["model"]}, run_dir)) as run:
                run.log_params({**p.to_dict(), "model": row["model"], "n_runs": row["n_runs"]})
                metrics = {k: float(v) for k, v in row.items() if k not in ("model", "task", "n_runs")}
                run.log_metrics({k: v for k, v in metrics.items() if not math.isnan(v)}, 0)
                run.log_artifact(report)
                ids.append(run.run_id)
    return ids
