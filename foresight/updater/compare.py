"""A comparison of update strategies over seeds, logged to MLflow.

One parent run per comparison (experiment "foresight-compare") and one nested child run per
(strategy, seed), tagged task/strategy/seed, with params task, strategy, seed, model, steps, lr
and mode, components (the number selected at the end), selected (their names) and
trainable_parameters, the step metrics of `finetune`, and its final accuracy_before,
accuracy_after and wall_s logged once (so the UI charts them as bars).
The parent holds `comparison.md` (`foresight.report`): held-out accuracy per strategy (mean and
95% t-interval over seeds), trainable parameters, wall time, and paired t-tests over seeds of the
`foresight.report.PAIRS` that ran (predictive vs static, predictive vs random, static vs random, ...);
`foresight.mlflow_ui.log_comparison` puts the same as summary metrics, tables and a figure on it.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from foresight.mlflow_log import SafeLogger, check_reachable, resolve_tracking_uri, start_run
from foresight.mlflow_ui import log_comparison
from foresight.report import comparison_markdown, paired_tests, summarise
from foresight.updater.finetune import DEFAULT_LR, FinetuneResult, finetune

EXPERIMENT = "foresight-compare"
CHILD_SETTINGS = ("model", "steps", "lr", "mode")  # finetune's arguments shown as child params


@dataclass
class Comparison:
    """`table`: one row per strategy; `tests`: one row per paired test; `run_id`: the parent run
    (of experiment `experiment_id`)."""

    table: pd.DataFrame
    tests: pd.DataFrame
    results: list[FinetuneResult]
    run_id: str
    experiment_id: str
    markdown: str


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
    defaults = {
        k: p.default for k, p in inspect.signature(finetune).parameters.items() if k in CHILD_SETTINGS
    }
    settings = {**defaults, **{k: v for k, v in finetune_args.items() if k in CHILD_SETTINGS}}
    settings["lr"] = settings["lr"] or DEFAULT_LR[settings["mode"]]
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
                    logger.log_params({"task": task, "strategy": strategy, "seed": seed, **settings})
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
                    logger.log_metrics({**final, "wall_s": result.wall_s}, 0)
                results.append(result)
        frame = pd.DataFrame([r.summary() for r in results])
        table, tests = summarise(frame), paired_tests(frame)
        markdown = comparison_markdown(task, table, tests)
        report = out / "comparison.md"
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(markdown)
        log_comparison(task, table, tests, report)
    return Comparison(table, tests, results, parent.info.run_id, parent.info.experiment_id, markdown)
