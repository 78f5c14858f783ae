"""Tracking overhead: wall time of a tracked SFT run / the same SFT run untracked, in one process.

    python experiments/bench_tracking.py [--task ioi] [--steps 200] [--every 10]

Plain and tracked runs alternate (`--repeats` pairs, after a short warm-up run); the ratio is of
the medians. Both use the same model, data, seed and step budget. The tracked run is the whole of
`trackers.run.track` (what `foresight track` calls: model loading, node and edge eap scores,
gradient norms, accuracy and faithfulness every `every` steps, taken in a background thread on a
copy of the model, Trainer checkpoints for --resume, MLflow logging to a temp store, figures);
the plain run is `foresight sft`'s Trainer alone (model loading excluded), so the ratio errs
high. Target on the default model: ratio <= 1.5.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from foresight.models import load_model
from foresight.sft import SFTConfig, make_trainer
from foresight.tasks import get_task
from trackers.run import track
from trackers.store import checkpoint_file, read_checkpoint
from trackers.tracker import TrackerSettings


def _fmt(seconds: list[float]) -> str:
    return ", ".join(f"{s:.1f}" for s in seconds)


def _plain(model_ref: str, tasks: list[str], config: SFTConfig, out: Path) -> float:
    """Seconds of an untracked SFT run (model loading excluded, as in the tracked run's ratio)."""
    model, tokenizer = load_model(model_ref)
    torch.manual_seed(config.seed)
    start = time.perf_counter()
    make_trainer(model, tokenizer, [get_task(t) for t in tasks], config, out).train()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", action="append", default=None)
    parser.add_argument("--model", default="default")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="alternating plain/tracked pairs")
    args = parser.parse_args()
    tasks = args.task or ["ioi"]
    torch.set_num_threads(args.threads)
    config = SFTConfig(steps=args.steps)
    settings = TrackerSettings(every=args.every)
    plain_s, tracked_s, checkpoint_s = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        _plain(args.model, tasks, SFTConfig(steps=5), Path(tmp) / "warm-up")
        for repeat in range(args.repeats):
            plain_s.append(_plain(args.model, tasks, config, Path(tmp) / f"plain-{repeat}"))
            start = time.perf_counter()
            run = track(tasks, Path(tmp) / f"tracked-{repeat}", args.model, config, settings)
            tracked_s.append(time.perf_counter() - start)
            checkpoint_s.append(
                sum(
                    read_checkpoint(checkpoint_file(state.writer.path, step))[1]["wall_s"]
                    for state in run.tracker.states.values()
                    for step in state.writer.steps()
                )
            )
    plain, tracked = statistics.median(plain_s), statistics.median(tracked_s)
    print(f"model {args.model}, tasks {','.join(tasks)}, {args.steps} steps, checkpoint every {args.every}")
    print(f"plain SFT     {plain:7.1f} s  (median of {_fmt(plain_s)})")
    print(f"tracked SFT   {tracked:7.1f} s  (median of {_fmt(tracked_s)})")
    seconds = statistics.median(checkpoint_s)
    print(f"  checkpoint work, in the background thread: {seconds:.1f} s")
    print(f"ratio         {tracked / plain:7.2f}  (target <= 1.5)")


if __name__ == "__main__":
    main()
