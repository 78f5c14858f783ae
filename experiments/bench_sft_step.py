"""Time one SFT step (forward, backward, AdamW step) of a model at batch 32.

    python experiments/bench_sft_step.py [--model default] [--repeats 20]

Target for the default model: under 0.3 s a step on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from foresight.models import load_model
from foresight.sft import AnswerCollator, ExampleDataset
from foresight.tasks import get_task, task_names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.model)
    model.train()
    tasks = [get_task(name) for name in task_names()]
    data = ExampleDataset(tokenizer, tasks, n_per_task=args.batch_size, seed=0)
    batch = AnswerCollator(tokenizer.pad_token_id)([data[i] for i in range(args.batch_size)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for _ in range(args.repeats + 2):
        start = time.perf_counter()
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    step = statistics.median(times[2:])
    shape = tuple(batch["input_ids"].shape)
    print(
        f"{args.model}: one SFT step at batch {shape} takes {step * 1000:.1f} ms (median of {args.repeats})"
    )


if __name__ == "__main__":
    main()
