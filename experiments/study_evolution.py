"""The evolution study: Circuit Distance, Stability and Conflict over SFT on every task, heads vs MLPs.

    python experiments/study_evolution.py [--seeds 0 1 2] [--steps 600] [--every 30] [--report-only]

Per seed, one SFT run of the default model on all tasks mixed (lr 1e-3, batch 32), tracked
every `every` steps from step 0 (node-level eap scores on 32 fixed pairs per task, circuit: the
top 10 heads and MLPs; the noise floor of CD from `--noise-floor` bootstrap resamples of the
pairs at step 0, `trackers.tracker.TrackerSettings.noise_floor`), in MLflow experiment
"study-evolution" with run directories runs/study-evolution/s{seed} (a run whose directory
exists is resumed, a finished one kept). Writes experiments/results/evolution.md (the
`foresight report` table: every metric at the last checkpoint, mean ± sd over seeds, and how
many runs migrated above the noise floor; its rows per run and task in evolution_per_run.csv),
evolution.png (per task, CD to step 0 of heads and of MLPs and CS to step 0 over steps, mean over
seeds) and evolution_cc.png (per task, Circuit Conflict with the other tasks over steps). Prints
the wall time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import mlflow
import pandas as pd
import torch
from matplotlib.figure import Figure
from mlflow import MlflowClient

from foresight.metric_names import CONFLICT, mlflow_name
from foresight.mlflow_log import resolve_tracking_uri
from foresight.report import evolution_frame, evolution_markdown, experiment_runs
from foresight.sft import SFTConfig
from foresight.tasks import task_names
from trackers.run import RUN_FILE, finished, track
from trackers.tracker import TrackerSettings

EXPERIMENT = "study-evolution"
ROOT = Path("runs") / EXPERIMENT
RESULTS = Path(__file__).parent / "results"
CURVES = {"cd_start_head": "CD heads", "cd_start_mlp": "CD MLPs", "cs_start": "CS"}


def histories(runs: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    """Tidy (run, task, metric, step, value) of the CURVES and the conflicts of every run."""
    client = MlflowClient()
    rows = []
    for run_id in runs["run_id"]:
        for task in tasks:
            for metric in CURVES:
                for m in client.get_metric_history(run_id, mlflow_name(task, metric)):
                    rows.append((run_id, task, metric, m.step, m.value))
            conflicts = [
                c[len("metrics.") :] for c in runs if c.startswith(f"metrics.{task}/{CONFLICT.name}")
            ]
            for name in conflicts:
                for m in client.get_metric_history(run_id, name):
                    rows.append((run_id, task, "cc", m.step, m.value))
    return pd.DataFrame(rows, columns=["run", "task", "metric", "step", "value"])


def _grid(tasks: list[str], title: str) -> tuple[Figure, list]:
    cols = 3
    fig = Figure(figsize=(10, 2.6 * -(-len(tasks) // cols)))
    axes = fig.subplots(-(-len(tasks) // cols), cols, sharex=True, sharey=True, squeeze=False).ravel()
    fig.suptitle(title)
    for ax in axes[len(tasks) :]:
        ax.set_visible(False)
    for ax in axes[-3:]:
        ax.set_xlabel("step")
    return fig, list(axes)


def plot_curves(curves: pd.DataFrame, tasks: list[str], path: Path) -> Path:
    """Per task: the CURVES over steps, mean over runs (the MLflow histories)."""
    fig, axes = _grid(tasks, "CD and CS to the step-0 circuit over SFT (mean over seeds; CS clipped)")
    means = curves.groupby(["task", "metric", "step"])["value"].mean()
    for ax, task in zip(axes, tasks, strict=False):
        for metric, label in CURVES.items():
            if (task, metric) in means.index.droplevel("step"):
                series = means.loc[(task, metric)]
                ax.plot(series.index, series.to_numpy().clip(-0.5, 1.5), label=label)
        ax.set_title(task, fontsize=9)
        ax.set_ylim(-0.55, 1.55)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_conflict(curves: pd.DataFrame, tasks: list[str], path: Path) -> Path:
    """Per task: Circuit Conflict with the other tasks over steps, mean over those tasks and runs."""
    fig, axes = _grid(tasks, "Circuit Conflict with the other tasks over SFT (mean over seeds)")
    cc = curves[curves["metric"] == "cc"].groupby(["task", "step"])["value"].mean()
    for ax, task in zip(axes, tasks, strict=False):
        if task in cc.index.get_level_values("task"):
            series = cc.loc[task]
            ax.plot(series.index, series.to_numpy(), color="C3")
        ax.set_title(task, fontsize=9)
        ax.set_ylim(-0.05, 1.05)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--every", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--noise-floor", type=int, default=20, help="bootstrap resamples of the pairs at step 0"
    )
    parser.add_argument("--report-only", action="store_true", help="rebuild the outputs from MLflow")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mlflow.set_tracking_uri(resolve_tracking_uri())
    tasks = task_names()
    settings = TrackerSettings(
        every=args.every,
        levels=("node",),
        n_pairs=32,
        n_eval=100,
        circuit_size=10,
        noise_floor=args.noise_floor,
    )
    start = time.perf_counter()
    for seed in [] if args.report_only else args.seeds:
        run_dir = ROOT / f"s{seed}"
        if finished(run_dir):  # logged before: its runs are in the table below
            continue
        run_start = time.perf_counter()
        sft = SFTConfig(steps=args.steps, seed=seed)
        track(tasks, run_dir, "default", sft, settings, (run_dir / RUN_FILE).is_file(), EXPERIMENT)
        print(f"seed {seed}: {time.perf_counter() - run_start:.0f} s", flush=True)
    runs = experiment_runs(EXPERIMENT)
    curves = histories(runs, tasks)
    RESULTS.mkdir(exist_ok=True)
    plot_curves(curves, tasks, RESULTS / "evolution.png")
    plot_conflict(curves, tasks, RESULTS / "evolution_cc.png")
    wall = f"{time.perf_counter() - start:.0f} s" if not args.report_only else "n/a (report only)"
    per_run = evolution_frame(runs)
    per_run.insert(1, "seed", per_run["run"].map(runs.set_index("run_id")["params.seed"]).astype(int))
    per_run.to_csv(RESULTS / "evolution_per_run.csv", index=False)
    markdown = evolution_markdown(per_run, "Evolution study: the circuit over SFT")
    steps, every = (",".join(sorted(runs[f"params.{p}"].unique())) for p in ("steps", "every"))
    markdown += (
        f"\nDefault model, all {len(tasks)} tasks mixed, {steps} steps, tracked every {every}, "
        f"{len(runs)} runs (seeds); 2-core CPU, {args.threads} threads; wall time: {wall}.\n"
    )
    (RESULTS / "evolution.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
