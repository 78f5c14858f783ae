"""Per-task accuracy of a model before and after the standard SFT run.

    python experiments/sft_accuracy.py [--model default] [--steps 1500]

The standard run: every built-in task mixed, answer-only loss, batch 32,
AdamW lr 1e-3 with linear decay, seed 0. Writes
experiments/results/sft_accuracy_{model}.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from foresight.evaluation import accuracy, choice_accuracy
from foresight.models import load_model
from foresight.sft import SFTConfig, make_trainer
from foresight.tasks import get_task, task_names

RESULTS = Path(__file__).parent / "results"


def evaluate(model, tokenizer, n: int) -> dict[str, tuple[float, float]]:
    return {
        name: (
            accuracy(model, tokenizer, get_task(name).eval_examples(n)),
            choice_accuracy(model, tokenizer, get_task(name).attribution_pairs(n)),
        )
        for name in task_names()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--n-eval", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model, tokenizer = load_model(args.model)
    before = evaluate(model, tokenizer, args.n_eval)
    config = SFTConfig(steps=args.steps)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        make_trainer(model, tokenizer, [get_task(n) for n in task_names()], config, out).train()
    seconds = time.perf_counter() - start
    after = evaluate(model, tokenizer, args.n_eval)
    table = pd.DataFrame(
        [
            {"task": name, "top-1 before": b[0], "top-1 after": after[name][0],
             "two-way before": b[1], "two-way after": after[name][1]}
            for name, b in before.items()
        ]
    )  # fmt: skip
    settings = (
        f"model `{args.model}`; SFT: all tasks mixed, {config.steps} steps, batch {config.batch_size}, "
        f"lr {config.lr}, seed {config.seed}; {seconds:.0f} s on {torch.get_num_threads()} threads; "
        f"{args.n_eval} held-out examples per task (two-way chance: 0.5)"
    )
    markdown = table.to_markdown(index=False, floatfmt=".3f") + f"\n\n{settings}\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"sft_accuracy_{Path(args.model).name}.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
