"""The trajectory corpus: tracked free SFT of the default model on every task, several seeds.

    python experiments/collect_trajectories.py [--root runs/corpus] [--seeds 0 1 2]
        [--steps 160] [--every 4] [--compact predictors/assets/corpus]

One run per (task, seed): single-task SFT (lr 1e-3, batch 32) tracked every `every` steps from
step 0 (node and edge eap scores on 32 fixed pairs, gradient norms, accuracy, faithfulness),
so the first tenth of training holds step 0 and `steps / (10 * every)` more checkpoints; then
the probe fine-tune of the `anticipate` baseline (trackers.probe). Each run is an MLflow run of
experiment "foresight-corpus". Re-running resumes: finished runs are skipped, an interrupted one
continues from its last Trainer checkpoint. `--compact` writes a node-level copy (what the tests
and the demo use). Prints the total time.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import pandas as pd
import torch

from foresight.sft import SFTConfig
from foresight.tasks import get_task, task_names
from trackers.probe import write_probe
from trackers.run import RUN_FILE, track
from trackers.store import (
    PROBE,
    TrajectoryWriter,
    checkpoint_file,
    find_trajectories,
    read_checkpoint,
    read_manifest,
    written_steps,
)
from trackers.tracker import TrackerSettings

EXPERIMENT = "foresight-corpus"


def _finished(trajectory: Path, n_checkpoints: int) -> bool:
    return len(written_steps(trajectory)) == n_checkpoints and (trajectory / PROBE).is_file()


def collect_run(
    task: str, seed: int, root: Path, model: str, sft: SFTConfig, settings: TrackerSettings
) -> str:
    """Track one (task, seed) run and write its probe; returns what was done."""
    run_dir = root / f"{task}-s{seed}"
    trajectory = run_dir / "trajectories" / task
    n_checkpoints = sft.steps // settings.every + 1
    if _finished(trajectory, n_checkpoints):
        return "done before"
    resume = (run_dir / RUN_FILE).is_file()
    run = track([task], run_dir, model, sft, settings, resume, EXPERIMENT, save_every=sft.steps // 4)
    write_probe(run.tracker.states[task].writer, model, get_task(task), sft, settings)
    shutil.rmtree(run_dir / "trainer", ignore_errors=True)
    return "resumed" if resume else "tracked"


def write_compact(root: Path, out: Path) -> int:
    """Node-level copies of every trajectory under `root` into `out/{run}`; returns the count."""
    paths = find_trajectories(root)
    for path in paths:
        manifest = read_manifest(path)
        target = out / path.parent.parent.name
        shutil.rmtree(target, ignore_errors=True)
        writer = TrajectoryWriter(target, manifest)
        for file in [*(checkpoint_file(path, s) for s in written_steps(path)), path / PROBE]:
            if not file.is_file():
                continue
            table, scalars = read_checkpoint(file)
            nodes = table[table["level"] == "node"].drop(columns="step")
            step = int(table["step"].iloc[0])
            if file.name == PROBE:
                writer.write_probe(nodes, scalars, step)
            else:
                writer.write_checkpoint(step, nodes, scalars)
    return len(paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("runs/corpus"))
    parser.add_argument("--model", default="default")
    parser.add_argument("--tasks", nargs="*", default=task_names())
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=160)
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--compact", type=Path, default=None, help="write a node-level copy here")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = TrackerSettings(every=args.every, n_pairs=32, n_eval=100, circuit_size=10)
    start = time.perf_counter()
    jobs = [(task, seed) for seed in args.seeds for task in args.tasks]
    for i, (task, seed) in enumerate(jobs, 1):
        run_start = time.perf_counter()
        done = collect_run(
            task, seed, args.root, args.model, SFTConfig(steps=args.steps, seed=seed), settings
        )
        elapsed = time.perf_counter() - start
        print(
            f"[{i}/{len(jobs)}] {task} seed {seed}: {done} in {time.perf_counter() - run_start:.0f} s "
            f"(total {elapsed:.0f} s)",
            flush=True,
        )
    if args.compact is not None:
        print(f"compact node-level copy: {write_compact(args.root, args.compact)} runs -> {args.compact}")
    final = pd.Timedelta(seconds=round(time.perf_counter() - start))
    print(f"corpus of {len(jobs)} runs under {args.root} in {final}")


if __name__ == "__main__":
    main()
