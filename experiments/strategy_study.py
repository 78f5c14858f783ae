"""The runner shared by the illusion and foresight studies: one `compare` per task, then the report.

A study is a list of strategies run on every task with the same seeds and budget
(`foresight.updater.compare`, one MLflow parent run per task in experiment `study-{name}`).
A task whose `runs/study-{name}/{task}/comparison.md` exists is skipped, so an interrupted study
resumes at the task it was on (what its killed run left in the task directory is cleared first).
A task claimed by another live process (its pid in `{task}/claimed`) is skipped too, so several
processes (one thread each) can share a study on one machine. At the end the tables are rebuilt
from MLflow (`foresight.report`, the same as `foresight report --experiment study-{name}`) into
`experiments/results/{name}.md`, with a bar figure of mean held-out accuracy per task and strategy
(95% t-interval over seeds) in `experiments/results/{name}.png`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
import torch
from matplotlib.figure import Figure

from foresight.mlflow_log import resolve_tracking_uri
from foresight.report import experiment_runs, strategy_frame, strategy_markdown, summarise
from foresight.tasks import task_names
from foresight.updater.compare import compare
from foresight.updater.config import FinetuneConfig

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
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--report-only", action="store_true", help="rebuild the tables from MLflow")
    return parser


def claim(directory: Path) -> bool:
    """Whether this process may run the task of `directory`: no live process has claimed it.
    Claims it (writes this pid to `directory/claimed`) when it may."""
    file = directory / "claimed"
    directory.mkdir(parents=True, exist_ok=True)
    if file.is_file():
        try:
            os.kill(int(file.read_text()), 0)
            return False
        except (ProcessLookupError, ValueError):
            file.unlink()  # its process died: the claim is stale
    try:
        with open(file, "x") as handle:
            handle.write(str(os.getpid()))
    except FileExistsError:
        return False
    return True


def plot_study(frame: pd.DataFrame, title: str, path: Path) -> Path:
    """Grouped bars: mean held-out accuracy per task (groups) and strategy (bars), 95% interval."""
    strategies = list(dict.fromkeys(frame["strategy"]))
    tasks = sorted(frame["task"].unique())
    width = 0.8 / len(strategies)
    fig = Figure(figsize=(max(6.0, 1.2 * len(tasks)), 3.6))
    ax = fig.subplots()
    for i, strategy in enumerate(strategies):
        rows = [summarise(frame[(frame.task == t) & (frame.strategy == strategy)]) for t in tasks]
        means = [r["accuracy"].iloc[0] if len(r) else float("nan") for r in rows]
        errors = [(r["ci_high"] - r["accuracy"]).fillna(0).iloc[0] if len(r) else 0.0 for r in rows]
        x = [j + (i - (len(strategies) - 1) / 2) * width for j in range(len(tasks))]
        ax.bar(x, means, width, yerr=errors, capsize=2, label=strategy)
    ax.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend(fontsize=7, ncols=len(strategies))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def run_study(
    name: str,
    config: StudyConfig,
    args: argparse.Namespace,
    forecaster_for: Callable[[str], Path | None] = lambda task: None,
) -> str:
    """Run (or resume) the study and write its table and figure; returns the markdown."""
    torch.set_num_threads(args.threads)
    mlflow.set_tracking_uri(resolve_tracking_uri())
    experiment, root = f"study-{name}", Path("runs") / f"study-{name}"
    start = time.perf_counter()
    for task in [] if args.report_only else args.tasks:
        if (root / task / "comparison.md").is_file():
            print(f"{task}: done before", flush=True)
            continue
        if not claim(root / task):
            print(f"{task}: running in another process", flush=True)
            continue
        for stale in (p for p in (root / task).iterdir() if p.is_dir()):
            shutil.rmtree(stale)
        task_start = time.perf_counter()
        forecaster = forecaster_for(task)
        settings = FinetuneConfig(
            steps=args.steps, every=config.every, log_every=config.log_every, components=config.components,
            forecaster=None if forecaster is None else str(forecaster), save_model=False,
        )  # fmt: skip
        compare(task, config.strategies, args.seeds, settings, root / task, experiment)
        print(f"{task}: {time.perf_counter() - task_start:.0f} s", flush=True)
    frame = strategy_frame(experiment_runs(experiment))
    title = f"{name.capitalize()} study: {', '.join(config.strategies)}"
    wall = f"{time.perf_counter() - start:.0f} s" if not args.report_only else "n/a (report only)"
    notes = [
        f"Default model, LoRA rank 8, {args.steps} steps, batch 32, K = {config.components} heads and "
        f"MLPs, seeds {sorted(frame['seed'].unique().tolist())}, {frame['task'].nunique()} tasks; "
        f"2-core CPU, {args.threads} threads; wall time of this invocation: {wall}.",
        "",
    ]
    markdown = strategy_markdown(frame, title) + "\n" + "\n".join(notes)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.md").write_text(markdown)
    plot_study(frame, title, RESULTS / f"{name}.png")
    print(markdown)
    return markdown
