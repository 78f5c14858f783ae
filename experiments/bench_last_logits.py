"""Logits at the last position only against all positions, in one run: time and peak memory of
a checkpoint's evaluation forward and task-loss gradient pass, GPT-2-small shape.

    python experiments/bench_last_logits.py [--vocab 50257] [--threads 1]

Each pass runs in its own process, once to warm up and twice timed, either way: `all` computes
the [B, T, V] logits and keeps each row's last position (what the evaluation and gradient passes
did before), `last` runs the LM head on the last positions only (`foresight.next_token`). Peak
memory is the process's peak RSS (model and data included). 100 held-out ioi prompts (no grad)
and 32 attribution pairs (the cross-entropy of the answer, backward to every weight), each set
padded to its longest row.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Callable

import torch
from fresh_process import row_result
from transformers import GPT2Config, GPT2LMHeadModel

from foresight.encoding import encode_pairs, pad_right, prompt_ids
from foresight.models import SHIPPED, load_tokenizer
from foresight.next_token import next_token_logits
from foresight.tasks import get_task

PASSES = ("evaluation", "gradients")


def measure(run: Callable[[], object]) -> tuple[float, float]:
    """(seconds per call over two timed calls after one warm-up, the process's peak RSS in MiB)."""
    run()
    start = time.perf_counter()
    run()
    run()
    seconds = (time.perf_counter() - start) / 2
    return seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(args: argparse.Namespace) -> None:
    """Measure pass `args.one[0]` with logits at `args.one[1]` (last or all); print JSON."""
    torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer(SHIPPED["default"])
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=args.vocab, n_layer=12, n_head=12, n_embd=768)).eval()
    task = get_task("ioi")
    rows = [prompt_ids(tokenizer, ex.prompt) for ex in task.eval_examples(100, seed=0)]
    prompts, prompt_last = pad_right(rows, 0), torch.tensor([len(r) - 1 for r in rows])
    pairs = encode_pairs(tokenizer, task.attribution_pairs(32, seed=0))

    def logits(ids: torch.Tensor, last: torch.Tensor, only_last: bool) -> torch.Tensor:
        if only_last:
            return next_token_logits(model, ids, last)
        return model(input_ids=ids, use_cache=False).logits[torch.arange(len(ids)), last]

    def evaluate(only_last: bool) -> None:
        with torch.no_grad():
            logits(prompts, prompt_last, only_last).argmax(-1)

    def gradients(only_last: bool) -> None:
        loss = torch.nn.functional.cross_entropy(logits(pairs.clean, pairs.last, only_last), pairs.answer)
        torch.autograd.grad(loss, list(model.parameters()))

    which, where = args.one
    run = evaluate if which == "evaluation" else gradients
    print(json.dumps(measure(lambda: run(where == "last"))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--one", nargs=2, metavar=("PASS", "LOGITS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return one(args)
    print(f"GPT-2-small shape, vocabulary {args.vocab}, {args.threads} threads, torch {torch.__version__}")
    for which in PASSES:
        found = {}
        for where in ("last", "all"):
            flags = ["--vocab", str(args.vocab), "--threads", str(args.threads), "--one", which, where]
            found[where] = row_result(__file__, flags)
        (last_s, last_mib), (all_s, all_mib) = found["last"], found["all"]
        print(
            f"{which}: all positions {all_s:.2f} s, peak {all_mib:.0f} MiB; last only {last_s:.2f} s, "
            f"peak {last_mib:.0f} MiB; last / all: time {last_s / all_s:.2f}, peak {last_mib / all_mib:.2f}"
        )


if __name__ == "__main__":
    main()
