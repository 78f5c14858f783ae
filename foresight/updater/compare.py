"""A comparison of update strategies over seeds, logged to MLflow.

One parent run per comparison (experiment "foresight-compare") and one nested child run per
(strategy, seed), tagged task/strategy/seed, with params components (the number selected at the
end), selected (their names), trainable_parameters and mode, and the step metrics of `finetune`.
The parent holds `comparison.md`: held-out accuracy per strategy (mean and 95% t-interval over
seeds), trainable parameters, wall time, and paired t-tests over seeds (scipy.stats.ttest_rel)
of predictive vs static, predictive vs random and static vs random, for the pairs that ran.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from foresight.tracking_log import SafeLogger, check_reachable, resolve_tracking_uri, start_run
from foresight.updater.finetune import FinetuneResult, finetune

EXPERIMENT = "foresight-compare"
PAIRS = (("predictive", "static"), ("predictive", "random"), ("static", "random"))
SMALL_N = 5


@dataclass
class Comparison:
    """`table`: one row per strategy; `tests`: one row per paired test; `run_id`: the parent run."""

    table: pd.DataFrame
    tests: pd.DataFrame
    results: list[FinetuneResult]
    run_id: str
    markdown: str


def summarise(results: Sequence[FinetuneResult]) -> pd.DataFrame:
    """Per strategy (in order of first appearance): n, accuracy before, accuracy mean and 95%
    t-interval (NaN for n = 1), trainable parameters and wall time (means)."""
    from scipy.stats import t

    frame = pd.DataFrame([r.summary() for r in results])
    rows = []
    for strategy, group in frame.groupby("strategy", sort=False):
        acc = group["accuracy_after"].to_numpy(float)
        n = len(acc)
        half = t.ppf(0.975, n - 1) * acc.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
        rows.append(
            {
                "strategy": strategy,
                "n": n,
                "accuracy_before": group["accuracy_before"].mean(),
                "accuracy": acc.mean(),
                "ci_low": acc.mean() - half,
                "ci_high": acc.mean() + half,
                "trainable_parameters": group["trainable_parameters"].mean(),
                "wall_s": group["wall_s"].mean(),
            }
        )
    return pd.DataFrame(rows)


def paired_tests(results: Sequence[FinetuneResult]) -> pd.DataFrame:
    """Paired t-tests of held-out accuracy over the seeds both strategies ran (a - b)."""
    from scipy.stats import ttest_rel

    acc = pd.DataFrame([r.summary() for r in results]).pivot(
        index="seed", columns="strategy", values="accuracy_after"
    )
    rows = []
    for a, b in PAIRS:
        if a in acc and b in acc:
            both = acc[[a, b]].dropna()
            test = ttest_rel(both[a], both[b]) if len(both) > 1 else None
            rows.append(
                {
                    "a": a,
                    "b": b,
                    "n": len(both),
                    "mean_diff": float((both[a] - both[b]).mean()),
                    "t": float(test.statistic) if test else float("nan"),
                    "p": float(test.pvalue) if test else float("nan"),
                }
            )
    return pd.DataFrame(rows, columns=["a", "b", "n", "mean_diff", "t", "p"])


def _markdown_table(frame: pd.DataFrame) -> str:
    def cell(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def to_markdown(task: str, table: pd.DataFrame, tests: pd.DataFrame) -> str:
    """The comparison report: the strategy table and the paired tests, with a small-n warning."""
    parts = [f"# Strategy comparison: {task}", "", "Held-out accuracy (95% t-interval over seeds):", ""]
    parts += [_markdown_table(table), "", "Paired t-tests over seeds (accuracy a - b):", ""]
    parts.append(_markdown_table(tests) if len(tests) else "No pair of predictive/static/random ran.")
    if len(tests) and tests["n"].min() < SMALL_N:
        parts += ["", f"Note: n = {tests['n'].min()} seeds is small; these tests have little power."]
    return "\n".join(parts) + "\n"


def compare(
    task: str,
    strategies: Sequence[str],
    seeds: Sequence[int],
    out_dir: str | Path = "runs/compare",
    experiment: str = EXPERIMENT,
    **finetune_args: Any,
) -> Comparison:
    """Run `finetune(task, strategy, seed=seed, **finetune_args)` for every strategy and seed,
    logging to MLflow (MLFLOW_TRACKING_URI, else ./mlflow.db); see the module docstring."""
    uri = resolve_tracking_uri()
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    out = Path(out_dir)
    params = {"task": task, "strategies": ",".join(strategies), "seeds": ",".join(map(str, seeds))}
    results = []
    with start_run(experiment, f"compare-{task}", {**params, **finetune_args}, {"task": task}) as parent:
        for strategy in strategies:
            for seed in seeds:
                name = f"{strategy}-s{seed}"
                tags = {"task": task, "strategy": strategy, "seed": str(seed)}
                with mlflow.start_run(
                    experiment_id=parent.info.experiment_id, run_name=name, nested=True, tags=tags
                ) as child:
                    logger = SafeLogger(child.info.run_id, out / name)
                    result = finetune(
                        task, strategy, seed=seed, out_dir=out / name, logger=logger, **finetune_args
                    )
                    logger.log_params(
                        {
                            "components": len(result.components),
                            "selected": ",".join(result.components),
                            "trainable_parameters": result.trainable_parameters,
                            "mode": result.mode,
                        }
                    )
                    final = {
                        "accuracy_before": result.accuracy_before,
                        "accuracy_after": result.accuracy_after,
                    }
                    logger.log_metrics({**final, "wall_s": result.wall_s}, int(result.metrics["step"].max()))
                results.append(result)
        table, tests = summarise(results), paired_tests(results)
        markdown = to_markdown(task, table, tests)
        report = out / "comparison.md"
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(markdown)
        mlflow.log_artifact(str(report))
    return Comparison(table, tests, results, parent.info.run_id, markdown)
