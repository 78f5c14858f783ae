"""Regenerate the shipped default models (Llama and its GPT-2 twin) from a seed.

    python experiments/pretrain_default.py [--arch llama gpt2] [--steps 3000] [--threads 1] [--seed 0]

Writes foresight/assets/default-llama and foresight/assets/default-gpt2 and
prints the wall time of each.
"""

from __future__ import annotations

import argparse
import time

import torch

from foresight.factory.pretrain import pretrain, save
from foresight.factory.tokenizer import build_tokenizer
from foresight.models import SHIPPED

TARGETS = {"llama": SHIPPED["default"], "gpt2": SHIPPED["default-gpt2"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    tokenizer = build_tokenizer()
    for arch in args.arch:
        start = time.perf_counter()
        model = pretrain(arch, tokenizer, steps=args.steps, seed=args.seed)
        save(model, tokenizer, TARGETS[arch])
        print(f"{arch}: {args.steps} steps in {time.perf_counter() - start:.0f} s -> {TARGETS[arch]}")


if __name__ == "__main__":
    main()
