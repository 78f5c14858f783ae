"""Cost of attribution relative to one training step, on 2 CPU threads (or the GPU).

For each model (the shipped default, if present, and a randomly initialised
GPT-2-small-sized model; with `--llama8b-shape` a 2-layer model of Llama-3-8B's
shape instead) and a batch of random clean/corrupted token pairs (`--tokens`
long, corrupted at two positions), prints the wall time of one training step
(AdamW, forward + backward + step), eap node and edge, eap-ig (m = 5) node and
edge, and exact node patching, their ratio to the training step, and the peak
memory of each:

- peak: the weights W (and the AdamW state, for the training step) plus the
  rise of the peak RSS over the RSS before the operation (CPU; the kernel's
  peak is reset first, and large blocks go back to the OS when freed), or
  torch.cuda.max_memory_allocated (CUDA);
- bound: 2 W + A (issue 24's target: twice the weights plus one chunk's
  activations), A the bytes that autograd saves in one attribution forward of
  a chunk (clean ids, gradient path from the embedding; parameters excluded,
  each storage once), and the ratio peak / bound (target <= 1; for the
  training step, whose AdamW state alone is 2 W, the ratio is shown only for
  comparison).

Every row runs in its own process, so peaks do not mix.

    python experiments/bench_attribution.py [--batch 32] [--chunk 32] [--threads 2] [--repeat 1]
        [--skip-gpt2-patching]
    python experiments/bench_attribution.py --llama8b-shape --batch 4 --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time

import torch
from fresh_process import row_result

OPS = ("train_step", "eap_node", "eap_edge", "eap_ig_node", "eap_ig_edge", "patching_node")
LLAMA8B_OPS = ("eap_node", "eap_edge")
METHODS = {
    "eap_node": ("eap", "node"),
    "eap_edge": ("eap", "edge"),
    "eap_ig_node": ("eap-ig", "node"),
    "eap_ig_edge": ("eap-ig", "edge"),
    "patching_node": ("patching", "node"),
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build(name: str, device: str, dtype: torch.dtype) -> tuple[torch.nn.Module, int]:
    """The model called `name` (default, gpt2-small, llama8b-shape) and its vocabulary size."""
    if name == "default":
        from foresight.models import load_model

        model, tokenizer = load_model("default", dtype=dtype, device=device)
        return model, len(tokenizer)
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if name == "llama8b-shape":
        config = LlamaConfig(
            hidden_size=4096,
            num_attention_heads=32,
            num_key_value_heads=8,
            intermediate_size=14336,
            num_hidden_layers=2,
            vocab_size=128256,
            max_position_embeddings=256,
            attn_implementation="eager",
        )
        model = LlamaForCausalLM._from_config(config, dtype=dtype)
    else:
        config = GPT2Config(n_layer=12, n_head=12, n_embd=768, n_positions=128, attn_implementation="eager")
        model = GPT2LMHeadModel(config).to(dtype)
    return model.to(device).eval(), config.vocab_size


def pairs(vocab: int, batch: int, tokens: int, device: str):
    from foresight.encoding import PairBatch

    g = torch.Generator().manual_seed(0)
    clean = torch.randint(4, vocab, (batch, tokens), generator=g)
    corrupted = clean.clone()
    corrupted[:, [2, tokens // 2]] = torch.randint(4, vocab, (batch, 2), generator=g)
    answer, wrong = torch.randint(4, vocab, (2, batch), generator=g)
    return PairBatch(clean, corrupted, torch.full((batch,), tokens - 1), answer, wrong).to(device)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1))


def forward_activation_bytes(model: torch.nn.Module, chunk) -> int:
    """Bytes autograd saves in one attribution forward of `chunk` (parameters excluded,
    each storage counted once)."""
    from foresight.attribution.runner import Runner

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        Runner(model).forward(chunk.clean, chunk.last, embed=lambda e: e.detach().requires_grad_())
    return sum(saved.values())


def run_op(name: str, op: str, args: argparse.Namespace) -> dict[str, float]:
    """Time one `op` on one model (after a warm-up on 2 pairs; the fastest of `--repeat` runs);
    its peak memory (over all runs) and bound in MiB."""
    from foresight.attribution import attribute

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, vocab = build(name, device, DTYPES[args.dtype])
    batch = pairs(vocab, args.batch, args.tokens, device)
    chunk = args.chunk or args.batch
    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5) if op == "train_step" else None

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
            attribute(model, b, method=method, level=level, ig_steps=5, batch_size=chunk)

    call(batch.slice(0, 2))
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # the peak RSS restarts from the current RSS
        base = _status_kib("VmRSS")
    seconds = float("inf")
    for _ in range(args.repeat):
        start = time.perf_counter()
        call(batch)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = min(seconds, time.perf_counter() - start)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated()
    else:
        state = [t for s in (optimizer.state.values() if optimizer else []) for t in s.values()]
        held = weights + sum(t.numel() * t.element_size() for t in state if torch.is_tensor(t))
        peak = held + (_status_kib("VmHWM") - base) * 1024
    bound = 2 * weights + forward_activation_bytes(model, batch.slice(0, chunk))
    return {"seconds": seconds, "peak_mib": peak / 2**20, "bound_mib": bound / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=17)
    parser.add_argument("--chunk", type=int, default=None, help="pairs per chunk (default: the batch)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="time the fastest of this many runs")
    parser.add_argument("--skip-gpt2-patching", action="store_true")
    parser.add_argument(
        "--llama8b-shape", action="store_true", help="only the 2-layer Llama-3-8B-shaped model"
    )
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "OP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(run_op(*args.child, args)))
        return
    from foresight.models import SHIPPED

    if args.llama8b_shape:
        models = {"llama8b-shape": LLAMA8B_OPS}
    else:
        models = {"gpt2-small": OPS}
        if SHIPPED["default"].is_dir():
            models = {"default": OPS, **models}
        else:
            print(f"note: {SHIPPED['default']} does not exist yet; the default model is skipped")
    print(
        f"batch {args.batch} x {args.tokens} tokens, chunk {args.chunk or args.batch}, {args.dtype}, "
        f"{args.threads} threads, fastest of {args.repeat}, {'cuda' if torch.cuda.is_available() else 'cpu'}"
    )
    print(
        f"{'model':<13} {'operation':<14} {'seconds':>9} {'x train step':>13} "
        f"{'peak MiB':>9} {'bound MiB':>10} {'peak/bound':>11}"
    )
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}  # freed large blocks leave the RSS
    flags = ["--batch", str(args.batch), "--tokens", str(args.tokens), "--dtype", args.dtype]
    flags += ["--threads", str(args.threads), "--repeat", str(args.repeat)] + (
        ["--chunk", str(args.chunk)] if args.chunk else []
    )
    for name, ops in models.items():
        train = None
        for op in ops:
            if op == "patching_node" and name == "gpt2-small" and args.skip_gpt2_patching:
                print(f"{name:<13} {op:<14} {'skipped':>9}")
                continue
            result = row_result(__file__, [*flags, "--child", name, op], env)
            train = train or (result["seconds"] if op == "train_step" else None)
            ratio = f"{result['seconds'] / train:.2f}" if train else "-"
            print(
                f"{name:<13} {op:<14} {result['seconds']:>9.2f} {ratio:>13} {result['peak_mib']:>9.0f} "
                f"{result['bound_mib']:>10.0f} {result['peak_mib'] / result['bound_mib']:>11.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
