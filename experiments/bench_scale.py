"""Scaling benchmark: the wall time of the same work run one way and another, and their ratio.

    python experiments/bench_scale.py [--steps 100] [--workers 2] [--ddp-steps 40]

DDP: `foresight sft` (no tracking) and `foresight track` (ioi, a checkpoint every 10 steps, node
and edge eap) of `--ddp-steps` steps with a global batch of 32, in 1 process (2 threads) and as 2
processes under torchrun (gloo, 1 thread each, batch 16 each); speed-up against the 1-process
run of the same command, and the tracking overhead: track wall time / sft wall time at the same
number of processes (rank 0 alone attributes, so this is the figure that must not grow with
ranks).

Sweep on Ray: 4 trials (ioi; strategies free and static; seeds 0 and 1; LoRA, batch 32, the
default attribution pairs and held-out examples) as a `foresight.sweep` on a local Ray of
`--workers` workers (one torch thread each), against the same 4 trials one after another in one
process (`foresight.updater.compare`, torch on all cores, then on one thread). All log to MLflow
in a temporary SQLite store. The sweep runs twice: on a Ray that it starts (its time includes starting Ray and
shutting it down), and on a Ray started before it (as on a cluster); both times it starts the
workers, each of which imports torch and transformers. Speed-up: sequential wall time / this row's.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import ray
import torch

from foresight.sweep import SweepConfig, run_sweep
from foresight.updater.compare import compare
from foresight.updater.config import FinetuneConfig

TASK, STRATEGIES, SEEDS = "ioi", ("free", "static"), (0, 1)


def sweep_rows(steps: int, workers: int) -> list[dict[str, object]]:
    """The 4 trials sequentially in this process (twice), then as a sweep on Ray (twice): see the
    module docstring."""
    settings = FinetuneConfig(steps=steps, save_model=False)
    what = f"{len(SEEDS) * len(STRATEGIES)} trials of {steps} steps"
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"  # where both log
        cores = torch.get_num_threads()
        for threads in (cores, 1):
            torch.set_num_threads(threads)
            start = time.perf_counter()
            compare(
                TASK, STRATEGIES, SEEDS, settings, Path(tmp) / f"seq{threads}", f"bench-sequential-{threads}"
            )
            setup = f"one process, {threads} thread{'s' if threads > 1 else ''}"
            rows.append({"comparison": what, "setup": setup, "wall_s": time.perf_counter() - start})
        torch.set_num_threads(cores)
        for ray_before in (False, True):
            if ray_before:
                quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
                ray.init(num_cpus=workers, include_dashboard=False, **quiet)
            name = f"bench-sweep-{'running' if ray_before else 'started'}"
            sweep = SweepConfig(name, (TASK,), STRATEGIES, SEEDS, settings, Path(tmp) / name)
            start = time.perf_counter()
            result = run_sweep(sweep, workers=workers, progress=False)
            wall = time.perf_counter() - start
            ray.shutdown()
            if len(result.ran) != 4:
                raise RuntimeError(f"the sweep ran {len(result.ran)} of 4 trials: {result.failed}")
            setup = f"sweep, Ray of {workers} workers {'running before' if ray_before else 'started by it'}"
            rows.append({"comparison": what, "setup": setup, "wall_s": wall})
    return rows


def ddp_rows(steps: int) -> list[dict[str, object]]:
    """`foresight sft` and `foresight track` in 1 process and in 2 under torchrun (module docstring)."""
    cores = os.cpu_count() or 1
    common = ["--task", "ioi", "--steps", str(steps), "--device", "cpu"]
    walls: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db", "PYTHONWARNINGS": "ignore"}
        for processes in (1, 2):
            env["OMP_NUM_THREADS"] = str(max(1, cores // processes))
            launcher = [sys.executable]
            if processes > 1:
                launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
                launcher.append(f"--nproc-per-node={processes}")
            batch = ["--batch-size", str(32 // processes)]
            for command, extra in (
                ("sft", ["--out", f"{tmp}/sft-{processes}"]),
                ("track", ["--every", "10", "--out", tmp, "--name", f"track-{processes}"]),
            ):
                start = time.perf_counter()
                subprocess.run(
                    [*launcher, "-m", "foresight.app.cli", command, *common, *batch, *extra],
                    env=env, check=True, capture_output=True,
                )  # fmt: skip
                walls[command, processes] = time.perf_counter() - start
    what = f"SFT of {steps} steps, global batch 32"
    rows = []
    for command in ("sft", "track"):
        for processes in (1, 2):
            row = {"comparison": f"{what}: {command}", "setup": f"{processes} process(es)"}
            row["wall_s"] = walls[command, processes]
            if command == "track":
                row["tracking overhead"] = walls["track", processes] / walls["sft", processes]
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ddp-steps", type=int, default=40)
    args = parser.parse_args()
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines on creating the store
    # one function per comparison, each giving its rows; the first row of each is its baseline
    ddp = ddp_rows(args.ddp_steps)
    comparisons = [ddp[:2], ddp[2:], sweep_rows(args.steps, args.workers)]
    rows = []
    for group in comparisons:
        baseline = group[0]["wall_s"]
        rows += [{**row, "speed-up": baseline / row["wall_s"]} for row in group]
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3g").replace(" nan ", "     "))


if __name__ == "__main__":
    main()
