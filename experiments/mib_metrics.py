"""MIB's CPR and CMD (edge level, `foresight.attribution.mib`) of eap, eap-ig and exact patching
on the shipped models, with random scores as the floor.

    python experiments/mib_metrics.py                                   # both shipped models
    python experiments/mib_metrics.py --model PATH --tasks ioi          # e.g. GPT-2 small on disk
    python experiments/mib_metrics.py --from-curves experiments/results/mib_metrics_curves.csv

Prints a markdown table (CPR: higher better; CMD: lower better; top-k and greedy selection)
and writes it to `--out`, with the curves of every run (`--curves`, CSV: model, task, method,
selection, fraction, n, f_signed, f_abs, cpr, cmd) beside it. Random is the mean over
`--random-seeds` draws of normal scores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from foresight.attribution import attribute
from foresight.attribution.faithfulness import CircuitEvaluator
from foresight.attribution.methods import METHODS
from foresight.attribution.mib import mib_frame
from foresight.attribution.runner import eval_mode
from foresight.attribution.scores import Scores
from foresight.encoding import encode_pairs
from foresight.models import load_model
from foresight.tasks import get_task


def random_scores(like: Scores, seed: int) -> Scores:
    """Normal scores of the same edges: the floor every method must beat."""
    values = np.random.default_rng(seed).standard_normal(len(like.names))
    return Scores(like.graph, like.level, "random", like.metric, like.names, values, like.metric_value,
                  like.corrupted_value)  # fmt: skip


def run(model_name: str, tasks: list[str], n_pairs: int, random_seeds: int) -> pd.DataFrame:
    """Every run's MIB frame (columns of `mib_frame` plus model, task, method, seed)."""
    model, tokenizer = load_model(model_name)
    frames = []
    for task in tasks:
        batch = encode_pairs(tokenizer, get_task(task).attribution_pairs(n_pairs, seed=0))
        with eval_mode(model):
            evaluator = CircuitEvaluator.of_batch(model, batch, "logit_diff", None)
        scored = {m: attribute(model, batch, method=m, level="edge") for m in METHODS.names()}
        runs = [(m, 0, s) for m, s in scored.items()]
        runs += [("random", seed, random_scores(scored["eap"], seed)) for seed in range(random_seeds)]
        for method, seed, scores in runs:
            with eval_mode(model):
                frame = mib_frame(evaluator, scores)
            gap = scores.metric_value - scores.corrupted_value
            frames.append(frame.assign(model=model_name, task=task, method=method, seed=seed, gap=gap))
            print(f"{model_name} {task} {method} {seed}: done", flush=True)
    return pd.concat(frames, ignore_index=True)


def table(curves: pd.DataFrame) -> str:
    """The markdown table: CPR and CMD per model, task, method and selection (random: mean over
    seeds), with the clean-minus-corrupted gap each faithfulness is normalised by."""
    keys = ["model", "task", "method", "selection"]
    per_run = curves.groupby([*keys, "seed"], sort=False)[["cpr", "cmd", "gap"]].first()
    summary = per_run.groupby(keys, sort=False).mean().unstack("selection")
    header = "| model | task | gap | method | CPR top-k | CMD top-k | CPR greedy | CMD greedy |"
    lines = [header, "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    for (model, task, method), row in summary.iterrows():
        cells = [f"{row[(m, s)]:.3f}" for s in ("top-k", "greedy") for m in ("cpr", "cmd")]
        gap = f"{row[('gap', 'top-k')]:.3f}"
        lines.append(f"| {model} | {task} | {gap} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["default", "default-gpt2"], help="names or paths")
    parser.add_argument("--tasks", nargs="+", default=["ioi", "induction", "docstring"])
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--random-seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("experiments/results/mib_metrics.md"))
    parser.add_argument("--curves", type=Path, default=Path("experiments/results/mib_metrics_curves.csv"))
    parser.add_argument("--from-curves", type=Path, help="rebuild the table from a curves CSV, no run")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.from_curves is not None:
        curves = pd.read_csv(args.from_curves)
    else:
        curves = pd.concat([run(m, args.tasks, args.pairs, args.random_seeds) for m in args.model])
    text = table(curves)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    if args.from_curves is None:
        curves.to_csv(args.curves, index=False)


if __name__ == "__main__":
    main()
