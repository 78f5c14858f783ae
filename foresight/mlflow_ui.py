"""What a person sees in the MLflow UI: metric names that say what they are, run descriptions,
and the strategy comparison as summary metrics, tables and a figure on the parent run.

Metric names come from the vocabulary `foresight.metric_names`: short keys computed
(`{task}/cd_start_head`, `cc/{a}/{b}`, `loss`) reach MLflow under descriptive names
(`ioi/circuit_distance/to_start/heads`); `TrackedRunLogger` renames on the way.
`describe_tracked_run` and `describe_finetune_run` are the run descriptions (shown on the run
page) that define each name.

Comparison. The parent run of `foresight compare` carries, per strategy, the summary metrics
`accuracy_after/{strategy}/mean`, `.../ci_low`, `.../ci_high`, `accuracy_before/{strategy}/mean`,
`trainable_parameters/{strategy}`, and per paired test `paired_test/{a}_vs_{b}/mean_diff` and
`.../p`; the tables `comparison/summary.json` and `comparison/paired_tests.json`
(`mlflow.log_table`); the figure `comparison/accuracy.png`; and `comparison.md` as its description.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from foresight.metric_names import CONFLICT, FINAL, LOSS, PER_TASK, mlflow_names
from foresight.mlflow_log import SafeLogger

UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default
# MLflow 3.17's UI picks GenAI or model-training pages by this query (the experiment tag
# mlflow.experimentKind, set too, decides where the UI has no GenAI/model-training switch)
MODEL_TRAINING = "workflowType=machine_learning"


def ui_url(experiment_id: str, run_id: str, page: str = "", base: str = UI) -> str:
    """The MLflow UI page of a run, as a model-training run (`page`: "", "/model-metrics",
    "/artifacts/PATH")."""
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}{page}?{MODEL_TRAINING}"


class TrackedRunLogger(SafeLogger):
    """A SafeLogger that logs the tracker's metrics under their MLflow names (`mlflow_names`)."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        super().log_metrics(mlflow_names(metrics), step)


def describe_tracked_run(tasks: Sequence[str]) -> str:
    """The run description (markdown) of a tracked run: what each metric name means."""
    lines = [
        f"Tracked SFT of {', '.join(tasks)}: the circuit (top-k heads and MLPs by |attribution|) "
        "of every task at every checkpoint.",
        "",
        *metric_table("track"),
        f"| `TASK/{CONFLICT.name}OTHER` | {CONFLICT.meaning} |",
        "",
        "Figures and trajectories are under Artifacts.",
    ]
    return "\n".join(lines)


def describe_finetune_run(task: str, strategy: str) -> str:
    """The run description (markdown) of one `foresight finetune` run in a comparison."""
    lines = [
        f"Fine-tuning on {task} of the components that strategy {strategy} selects.",
        "",
        *metric_table("finetune"),
    ]
    return "\n".join(lines)


def metric_table(command: str) -> list[str]:
    """The markdown rows defining the metrics that runs of `command` log (per-task ones under
    the task's section TASK, then the run-level ones)."""
    per_task = [(f"TASK/{m.name}", m.meaning) for m in PER_TASK.values() if command in m.logged_by]
    run_level = [(m.name, m.meaning) for m in (LOSS, *FINAL.values()) if command in m.logged_by]
    return ["| metric | meaning |", "| --- | --- |", *(f"| `{n}` | {m} |" for n, m in per_task + run_level)]


def set_description(logger: SafeLogger, markdown: str) -> None:
    """Set a run's description (the markdown the run page shows above its details)."""
    logger.set_tags({"mlflow.note.content": markdown})


def comparison_metrics(table: pd.DataFrame, tests: pd.DataFrame) -> dict[str, float]:
    """The parent run's summary metrics (see the module docstring), rounded to 4 decimals for
    people; NaN values are left out."""
    metrics: dict[str, float] = {}
    for row in table.itertuples(index=False):
        s = row.strategy
        metrics |= {
            f"accuracy_after/{s}/mean": row.accuracy,
            f"accuracy_after/{s}/ci_low": row.ci_low,
            f"accuracy_after/{s}/ci_high": row.ci_high,
            f"accuracy_before/{s}/mean": row.accuracy_before,
            f"trainable_parameters/{s}": row.trainable_parameters,
        }
    for row in tests.itertuples(index=False):
        metrics |= {
            f"paired_test/{row.a}_vs_{row.b}/mean_diff": row.mean_diff,
            f"paired_test/{row.a}_vs_{row.b}/p": row.p,
        }
    return {k: round(float(v), 4) for k, v in metrics.items() if pd.notna(v)}


def comparison_figure(task: str, table: pd.DataFrame, tests: pd.DataFrame) -> Figure:
    """Left: held-out accuracy after fine-tuning per strategy, mean with its 95% interval
    (within [0, 1]), and the accuracy before as a dashed line. Right: the paired tests, mean
    difference a - b per pair with its p value."""
    fig = Figure(figsize=(10, 4.2))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    x = np.arange(len(table))
    mean = table["accuracy"].to_numpy(float)
    low = np.nan_to_num(mean - table["ci_low"].to_numpy(float))
    high = np.nan_to_num(table["ci_high"].to_numpy(float) - mean)
    left.bar(x, mean, color="tab:blue", alpha=0.75, label="after (mean over seeds)")
    left.errorbar(x, mean, yerr=[low, high], fmt="none", ecolor="black", capsize=5, label="95% interval")
    before = float(table["accuracy_before"].mean())
    left.axhline(before, color="gray", linestyle="--", label=f"before fine-tuning ({before:.2f})")
    for xi, m in zip(x, mean, strict=True):
        left.annotate(f"{m:.2f}", (xi, m), textcoords="offset points", xytext=(8, 3), fontsize=8)
    left.set_xticks(x, table["strategy"], rotation=20, ha="right")
    left.set(
        ylim=(0, 1.05),
        ylabel="held-out accuracy",
        title=f"{task}: accuracy per strategy (n = {int(table['n'].max())} seeds)",
    )
    left.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, frameon=False)
    if len(tests):
        labels = [f"{a} - {b}" for a, b in zip(tests["a"], tests["b"], strict=True)]
        diff = tests["mean_diff"].to_numpy(float)
        y = np.arange(len(tests))
        right.barh(y, diff, color=["tab:green" if d > 0 else "tab:red" for d in diff], alpha=0.75)
        for yi, d, p in zip(y, diff, tests["p"], strict=True):
            text = "p n/a" if pd.isna(p) else f"p = {p:.2g}"
            side = {"xytext": (4, -3), "ha": "left"} if d >= 0 else {"xytext": (-4, -3), "ha": "right"}
            right.annotate(text, (d, yi), textcoords="offset points", fontsize=8, **side)
        right.axvline(0, color="black", linewidth=0.8)
        right.set_yticks(y, labels, fontsize=8)
        right.invert_yaxis()
        limit = max(0.05, float(np.nanmax(np.abs(diff))) * 1.6)
        right.set(
            xlim=(-limit, limit), xlabel="mean accuracy difference", title="paired tests (sign-flip p, Holm)"
        )
    else:
        right.set_axis_off()
        right.text(0.5, 0.5, "no pair of the tested strategies ran", ha="center", transform=right.transAxes)
    fig.tight_layout()
    return fig


def log_comparison(
    logger: SafeLogger, task: str, table: pd.DataFrame, tests: pd.DataFrame, report: Path
) -> None:
    """Log the comparison to `logger`'s (parent) run: summary metrics, tables, figure, the
    report file, and the report as the run's description. The tables and the figure are also
    saved in the logger's run directory under `comparison/`."""
    logger.log_metrics(comparison_metrics(table, tests), 0)
    logger.log_table(table, "comparison/summary.json")
    if len(tests):
        logger.log_table(tests, "comparison/paired_tests.json")
    logger.log_figure(comparison_figure(task, table, tests), "comparison/accuracy.png")
    logger.log_artifact(report)
    set_description(logger, report.read_text())
