"""Tracking overhead: wall time of a tracked SFT run / the same SFT run untracked, in one process.

    python experiments/bench_tracking.py [--task ioi] [--steps 200] [--every 10] [--every 50]
    python experiments/bench_tracking.py --gpt2-small --steps 50 --every 10 --every 50 --batch-size 8

Plain and tracked runs alternate (`--repeats` pairs per cadence, after a short warm-up run); the
ratios are of the medians. Both use the same model, data, seed and step budget. The tracked run
is the whole of `trackers.run.track` (what `foresight track` calls: model loading, node and edge
eap scores, gradient norms, accuracy and faithfulness every `every` steps, Trainer checkpoints
for --resume, MLflow logging to a temp store, figures), with the background tracking copy
`--tracking-copy` (on, off, or both, to compare them); the plain run is `foresight sft`'s Trainer
alone (model loading excluded), so the ratio errs high. `--gpt2-small`: a random GPT-2-small-shaped
model (12 layers, 12 heads, width 768, the shipped tokenizer), built and saved first.

Printed per cadence: the ratio (target <= 1.5 every 10 steps, <= 1.1 every 50), one checkpoint's
cost in training steps (its `wall_s`, all passes included, over the plain run's time per step;
target <= 5), and, for the synchronous path (where checkpoints run in line), the fixed cost:
tracked - plain - the checkpoints' wall time (model loading, MLflow store and run, the final
figures and artifact upload).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from foresight.models import SHIPPED, load_model, load_tokenizer
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


def _tracked(
    model_ref: str, tasks: list[str], config: SFTConfig, settings: TrackerSettings, out: Path, copy: str
) -> tuple[float, list[float]]:
    """Seconds of a tracked run and the wall time of each of its checkpoints (summed over tasks)."""
    start = time.perf_counter()
    run = track(tasks, out, model_ref, config, settings, tracking_copy=copy)
    seconds = time.perf_counter() - start
    states = list(run.tracker.states.values())
    steps = states[0].writer.steps()
    walls = [
        sum(read_checkpoint(checkpoint_file(s.writer.path, step))[1]["wall_s"] for s in states)
        for step in steps
    ]
    return seconds, walls


def gpt2_small(directory: Path) -> str:
    """Save a random GPT-2-small-shaped model with the shipped tokenizer in `directory`."""
    tokenizer = load_tokenizer(SHIPPED["default"])
    torch.manual_seed(0)
    config = GPT2Config(n_layer=12, n_head=12, n_embd=768, n_positions=256, vocab_size=len(tokenizer))
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        setattr(config, name, getattr(tokenizer, name))
    GPT2LMHeadModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", action="append", default=None)
    parser.add_argument("--model", default="default")
    parser.add_argument("--gpt2-small", action="store_true", help="a random GPT-2-small-shaped model")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, action="append", default=None, help="cadences (default 10)")
    parser.add_argument("--batch-size", type=int, default=SFTConfig.batch_size)
    parser.add_argument("--n-pairs", type=int, default=TrackerSettings.n_pairs)
    parser.add_argument("--tracking-copy", choices=("on", "off", "both"), default="both")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="alternating plain/tracked pairs")
    args = parser.parse_args()
    tasks = args.task or ["ioi"]
    torch.set_num_threads(args.threads)
    config = SFTConfig(steps=args.steps, batch_size=args.batch_size)
    copies = ("off", "on") if args.tracking_copy == "both" else (args.tracking_copy,)
    with tempfile.TemporaryDirectory() as tmp:
        model = gpt2_small(Path(tmp) / "gpt2-small") if args.gpt2_small else args.model
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        _plain(model, tasks, SFTConfig(steps=2, batch_size=args.batch_size), Path(tmp) / "warm-up")
        name = "gpt2-small (random)" if args.gpt2_small else model
        print(f"model {name}, tasks {','.join(tasks)}, {args.steps} steps, batch {args.batch_size}, ", end="")
        print(
            f"{args.n_pairs} attribution pairs, {args.threads} threads, torch {torch.__version__} on the CPU"
        )
        for every in args.every or [10]:
            settings = TrackerSettings(every=every, n_pairs=args.n_pairs)
            plain_s: list[float] = []
            tracked_s: dict[str, list[float]] = {c: [] for c in copies}
            walls: dict[str, list[float]] = {c: [] for c in copies}
            for repeat in range(args.repeats):
                plain_s.append(_plain(model, tasks, config, Path(tmp) / f"plain-{every}-{repeat}"))
                for copy in copies:
                    out = Path(tmp) / f"tracked-{every}-{copy}-{repeat}"
                    seconds, checkpoint_walls = _tracked(model, tasks, config, settings, out, copy)
                    tracked_s[copy].append(seconds)
                    walls[copy] += checkpoint_walls
            plain = statistics.median(plain_s)
            step = plain / args.steps
            print(
                f"\ncheckpoint every {every}: plain SFT {plain:.1f} s (median of {_fmt(plain_s)}), ", end=""
            )
            print(f"{step:.3f} s per training step")
            for copy in copies:
                tracked = statistics.median(tracked_s[copy])
                checkpoint = statistics.median(walls[copy])
                line = f"  tracking copy {copy:<3}: tracked {tracked:.1f} s ({_fmt(tracked_s[copy])}), "
                line += f"ratio {tracked / plain:.2f}; one checkpoint {checkpoint:.2f} s = "
                line += f"{checkpoint / step:.1f} training steps"
                if copy == "off":
                    n = len(walls[copy]) / args.repeats
                    line += f"; fixed cost {tracked - plain - n * checkpoint:.1f} s"
                print(line, flush=True)


if __name__ == "__main__":
    main()
