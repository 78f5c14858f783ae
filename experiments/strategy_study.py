"""The runner shared by the illusion and foresight studies: a sweep on Ray, then the report.

A study is a list of strategies run on every task with the same seeds and budget, as one
`foresight.sweep` (one Ray task per trial; one MLflow parent run per task in experiment
`study-{name}`, files under `runs/study-{name}`). A trial that fails or whose worker dies is retried by
Ray; running a study again resumes it: the trials already FINISHED in MLflow are skipped. At the
end the tables are rebuilt from MLflow (`foresight.report`, the same as `foresight report
--experiment study-{name}`) into `experiments/results/{name}.md`, with a bar figure of mean
held-out accuracy per task and strategy (95% t-interval over seeds) in
`experiments/results/{name}.png`, and the per-run results (every seed's accuracy) in
`experiments/results/{name}_per_run.csv`, from which `foresight report --per-run` rebuilds the
table without MLflow.
"""

from __future__ import annotations

import argparse
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from matplotlib.figure import Figure

from foresight.mlflow_log import resolve_tracking_uri
from foresight.report import experiment_runs, per_run_csv, strategy_frame, strategy_markdown, strategy_summary
from foresight.sweep import SweepConfig, run_sweep
from foresight.tasks import task_family, task_names
from foresight.updater.config import FinetuneConfig
from predictors.strategies import Predictive  # noqa: F401  (registers the forecasting strategies)

RESULTS = Path(__file__).parent / "results"


@dataclass
class StudyConfig:
    """What every comparison of a study shares besides the command line's tasks, seeds and
    steps: the strategies, the reselection and predictive-checkpoint spacing (the corpus's),
    the metrics cadence and K."""

    strategies: Sequence[str]
    every: int = 4
    log_every: int = 20
    components: int = 8


def study_parser(description: str) -> argparse.ArgumentParser:
    """The command line every study shares (its script may add more arguments)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--tasks", nargs="*", default=task_names())
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=160)
    parser.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray (trials at once)")
    parser.add_argument("--address", help="run on this Ray cluster instead (its CPUs, not --workers)")
    parser.add_argument("--report-only", action="store_true", help="rebuild the tables from MLflow")
    return parser


def plot_study(frame: pd.DataFrame, title: str, path: Path) -> Path:
    """Grouped bars: mean held-out accuracy per task (groups) and strategy (bars), 95% interval."""
    strategies = list(dict.fromkeys(frame["strategy"]))
    tasks = sorted(frame["task"].unique())
    width = 0.8 / len(strategies)
    fig = Figure(figsize=(max(6.0, 0.16 * len(tasks) * len(strategies) + 1.5), 3.6))
    ax = fig.subplots()
    for i, strategy in enumerate(strategies):
        rows = [strategy_summary(frame[(frame.task == t) & (frame.strategy == strategy)]) for t in tasks]
        means = [r["accuracy"].iloc[0] if len(r) else float("nan") for r in rows]
        errors = [(r["ci_high"] - r["accuracy"]).fillna(0).iloc[0] if len(r) else 0.0 for r in rows]
        x = [j + (i - (len(strategies) - 1) / 2) * width for j in range(len(tasks))]
        ax.bar(x, means, width, yerr=errors, capsize=2, label=strategy)
    ax.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0, 1.05)
    ax.set_title("\n".join(textwrap.wrap(title, 70)), fontsize=10)
    ax.legend(fontsize=7, ncols=min(4, len(strategies)), loc="upper center", bbox_to_anchor=(0.5, -0.22))
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def run_study(
    name: str,
    config: StudyConfig,
    args: argparse.Namespace,
    forecaster_for: Callable[[str], Path | None] = lambda task: None,
) -> str:
    """Run (or resume) the study and write its table and figure; returns the markdown."""
    mlflow.set_tracking_uri(resolve_tracking_uri())
    experiment = f"study-{name}"
    start = time.perf_counter()
    if not args.report_only:
        forecasters = {t: f for t in args.tasks if (f := forecaster_for(t)) is not None}
        settings = FinetuneConfig(
            steps=args.steps, every=config.every, log_every=config.log_every, components=config.components,
            save_model=False,
        )  # fmt: skip
        sweep = SweepConfig(
            experiment, tuple(args.tasks), tuple(config.strategies), tuple(args.seeds), settings,
            Path("runs") / experiment, {t: str(f) for t, f in forecasters.items()},
        )  # fmt: skip
        result = run_sweep(sweep, None if args.address else args.workers, args.address)
        print(f"{len(result.ran)} trials run, {len(result.skipped)} finished before", flush=True)
        for key, error in result.failed.items():
            print(f"{key}: failed every try ({error})", flush=True)
    frame = strategy_frame(experiment_runs(experiment))
    per_run_csv(frame, RESULTS / f"{name}_per_run.csv", task_family, "lora")
    title = f"{name.capitalize()} study: {', '.join(config.strategies)}"
    wall = f"{time.perf_counter() - start:.0f} s" if not args.report_only else "n/a (report only)"
    where = f"Ray cluster {args.address}" if args.address else f"{args.workers} Ray workers of 1 thread"
    notes = [
        f"Default model, LoRA rank 8, {args.steps} steps, batch 32, K = {config.components} heads and "
        f"MLPs, seeds {sorted(frame['seed'].unique().tolist())}, {frame['task'].nunique()} tasks; "
        f"2-core CPU, {where}; wall time of this invocation: {wall}.",
        "",
    ]
    markdown = strategy_markdown(frame, title) + "\n" + "\n".join(notes)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.md").write_text(markdown)
    plot_study(frame, title, RESULTS / f"{name}.png")
    print(markdown)
    return markdown
