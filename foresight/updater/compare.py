"""A comparison of update strategies over seeds, logged to MLflow.

One parent run per comparison (experiment "foresight-compare") and one nested child run per
(strategy, seed), tagged task/strategy/seed, with params task, strategy, seed, model, steps, lr
and mode, components (the number selected at the end), selected (their names) and
trainable_parameters, the step metrics of `finetune`, and its final accuracy_before,
accuracy_after and wall_s logged once (so the UI charts them as bars; names from
`foresight.metric_names`), and a description that defines them.
The parent holds `comparison.md` (`foresight.report`): held-out accuracy per strategy (mean and
95% t-interval over seeds), trainable parameters, wall time, and paired tests over seeds (exact
sign-flip p, Holm; `foresight.stats`) of the
`foresight.report.PAIRS` that ran (predictive vs static, predictive vs random, static vs random, ...);
`foresight.mlflow_ui.log_comparison` puts the same as summary metrics, tables and a figure on it.
`log_trial` (one child run) and `log_summary` (the parent's report) are shared with `foresight.sweep`.
Every write goes through `foresight.mlflow_log.SafeLogger`: if the tracking server goes away after
the parent run is opened, the comparison goes on and `foresight sync OUT` uploads what it missed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd

from foresight.metric_names import FINAL
from foresight.mlflow_log import SafeLogger, ended, get_or_create_experiment, open_run, resolve_tracking_uri
from foresight.mlflow_ui import describe_finetune_run, log_comparison, set_description
from foresight.report import comparison_markdown, strategy_summary, strategy_tests
from foresight.tracking_uri import check_tracking_uri
from foresight.updater.config import FinetuneConfig
from foresight.updater.finetune import FinetuneResult, finetune

EXPERIMENT = "foresight-compare"
RUN_ID_FILE = "run_id"  # in a trial's directory: the id of its MLflow run


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


def shared_params(config: FinetuneConfig) -> dict[str, object]:
    """The settings every child run of a comparison shares (all but strategy and seed): the
    parent run's params."""
    return {k: v for k, v in config.to_dict().items() if k not in ("strategy", "seed")}


def log_trial(
    task: str,
    config: FinetuneConfig,
    parent: SafeLogger,
    out_dir: Path,
    tags: Mapping[str, str] | None = None,
) -> FinetuneResult:
    """`finetune(task, config, out_dir)` logged as a child run of `parent`'s run (named
    `{strategy}-s{seed}`, tagged task, strategy, seed and `tags`), with the params and final metrics
    of the module docstring; the run ends FINISHED, or FAILED (KILLED on Ctrl-C) if it raises. Its
    id is written to `{out_dir}/run_id` as soon as it exists."""
    child_tags = {"task": task, "strategy": config.strategy, "seed": str(config.seed), **(tags or {})}
    settings = {"model": config.model, "steps": config.steps, "lr": config.learning_rate, "mode": config.mode}
    logger = parent.new_run(f"{config.strategy}-s{config.seed}", child_tags, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RUN_ID_FILE).write_text(logger.run_id)
    logger.log_params({"task": task, "strategy": config.strategy, "seed": config.seed, **settings})
    set_description(logger, describe_finetune_run(task, config.strategy))
    with ended(logger):
        result = finetune(task, config, out_dir, logger)
        logger.log_params(
            {
                "components": len(result.components),
                "selected": ",".join(result.components),
                "trainable_parameters": result.trainable_parameters,
            }
        )
        logger.log_metrics({FINAL[key].name: getattr(result, key) for key in FINAL}, 0)
    return result


def log_summary(
    task: str, frame: pd.DataFrame, out_dir: Path, logger: SafeLogger
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The comparison of `frame` (one row per child run, with `foresight.report.STRATEGY_COLUMNS`
    and wall_s) written to `{out_dir}/comparison.md` and logged through `logger` (the parent run's);
    returns the strategy table, the paired tests and the markdown."""
    table, tests = strategy_summary(frame), strategy_tests(frame)
    markdown = comparison_markdown(task, table, tests)
    report = out_dir / "comparison.md"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(markdown)
    log_comparison(logger, task, table, tests, report)
    return table, tests, markdown


def compare(
    task: str,
    strategies: Sequence[str],
    seeds: Sequence[int],
    config: FinetuneConfig = FinetuneConfig(),
    out_dir: str | Path = "runs/compare",
    experiment: str = EXPERIMENT,
) -> Comparison:
    """Run `finetune(task, config.with_run(strategy, seed))` for every strategy and seed,
    logging to MLflow (MLFLOW_TRACKING_URI, else ./mlflow.db); see the module docstring."""
    twice = sorted({s for s in strategies if list(strategies).count(s) > 1})
    if twice:
        raise ValueError(
            f"--strategies {','.join(strategies)}: names {twice[0]!r} twice (each runs once per seed)"
        )
    runs = [config.with_run(strategy, seed) for strategy in strategies for seed in seeds]  # checked first
    uri = resolve_tracking_uri()
    check_tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    out = Path(out_dir)
    params = {"task": task, "strategies": ",".join(strategies), "seeds": ",".join(map(str, seeds))}
    shared = shared_params(config)
    experiment_id = get_or_create_experiment(experiment)
    parent_id = open_run(experiment, f"compare-{task}", {**params, **shared}, {"task": task})
    parent = SafeLogger(parent_id, out, experiment_id=experiment_id)
    with ended(parent):
        results = [log_trial(task, run, parent, out / f"{run.strategy}-s{run.seed}") for run in runs]
        frame = pd.DataFrame([r.summary() for r in results])
        table, tests, markdown = log_summary(task, frame, out, parent)
    return Comparison(table, tests, results, parent_id, experiment_id, markdown)
