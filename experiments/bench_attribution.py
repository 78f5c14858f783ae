"""Cost of attribution relative to one training step, on 2 CPU threads (or the GPU).

For each model (the shipped default, if present, and a randomly initialised
GPT-2-small-sized model) and a batch of random clean/corrupted token pairs
(`--tokens` long, corrupted at two positions), prints the wall time of one
training step (AdamW, forward + backward + step), eap node, eap edge, eap-ig
(m = 5) node and edge, and exact node patching, their ratio to the training step, and the
peak memory each adds: the rise of the peak RSS over the RSS before it (CPU),
or torch.cuda.max_memory_allocated (CUDA). Every row runs in its own process,
so peaks do not mix.

    python experiments/bench_attribution.py [--batch 64] [--skip-gpt2-patching]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

OPS = ("train_step", "eap_node", "eap_edge", "eap_ig_node", "eap_ig_edge", "patching_node")
METHODS = {
    "eap_node": ("eap", "node"),
    "eap_edge": ("eap", "edge"),
    "eap_ig_node": ("eap-ig", "node"),
    "eap_ig_edge": ("eap-ig", "edge"),
    "patching_node": ("patching", "node"),
}


def build(name: str, device: str) -> tuple[torch.nn.Module, int]:
    if name == "default":
        from foresight.models import load_model

        model, tokenizer = load_model("default", device=device)
        return model, len(tokenizer)
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=12, n_head=12, n_embd=768, n_positions=128, attn_implementation="eager")
    return GPT2LMHeadModel(config).to(device), config.vocab_size


def pairs(vocab: int, batch: int, tokens: int, device: str):
    from foresight.encoding import PairBatch

    g = torch.Generator().manual_seed(0)
    clean = torch.randint(4, vocab, (batch, tokens), generator=g)
    corrupted = clean.clone()
    corrupted[:, [2, tokens // 2]] = torch.randint(4, vocab, (batch, 2), generator=g)
    answer, wrong = torch.randint(4, vocab, (2, batch), generator=g)
    return PairBatch(clean, corrupted, torch.full((batch,), tokens - 1), answer, wrong).to(device)


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def run_op(name: str, op: str, batch_size: int, tokens: int) -> dict[str, float]:
    """Time one `op` on one model (after a warm-up on 4 pairs); peak memory it adds in MiB."""
    from foresight.attribution import attribute

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, vocab = build(name, device)
    batch = pairs(vocab, batch_size, tokens, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def call(b) -> None:
        if op == "train_step":
            model.train()
            loss = model(input_ids=b.clean, labels=b.clean).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            model.eval()
        else:
            method, level = METHODS[op]
            attribute(model, b, method=method, level=level, ig_steps=5)

    call(batch.slice(0, 4))
    base = rss_kib()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    start = time.perf_counter()
    call(batch)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if device == "cuda":
        peak = (torch.cuda.max_memory_allocated() - base_cuda) / 2**20
    else:
        peak = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    return {"seconds": seconds, "peak_mib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=17)
    parser.add_argument("--skip-gpt2-patching", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "OP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.child:
        print(json.dumps(run_op(*args.child, args.batch, args.tokens)))
        return
    from foresight.models import SHIPPED

    models = ["gpt2-small"]
    if SHIPPED["default"].is_dir():
        models.insert(0, "default")
    else:
        print(f"note: {SHIPPED['default']} does not exist yet; the default model is skipped")
    print(f"batch {args.batch} x {args.tokens} tokens, {torch.get_num_threads()} threads")
    print(f"{'model':<11} {'operation':<14} {'seconds':>9} {'x train step':>13} {'peak MiB':>9}")
    for name in models:
        train = None
        for op in OPS:
            if op == "patching_node" and name == "gpt2-small" and args.skip_gpt2_patching:
                print(f"{name:<11} {op:<14} {'skipped':>9}")
                continue
            command = [sys.executable, __file__, "--batch", str(args.batch), "--tokens", str(args.tokens)]
            out = subprocess.run([*command, "--child", name, op], capture_output=True, text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            train = train or result["seconds"]
            ratio = result["seconds"] / train
            print(
                f"{name:<11} {op:<14} {result['seconds']:>9.2f} {ratio:>13.2f} {result['peak_mib']:>9.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
