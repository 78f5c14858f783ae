"""The GPU check: what Foresight costs on real model shapes, in one short run (experiments/gpu_check.sh).

On randomly initialised bfloat16 models built on the device (no hub: transformers config classes
and the shipped word-level tokenizer, whose ids all lie inside their vocabularies):

- llama3-8b-2l: Llama-3-8B's layer shapes (hidden 4096, 32 heads, 8 KV heads, MLP 14336,
  vocab 128256) with 2 layers;
- llama3-8b-32l: the same at full depth (32 layers, 8.03 B parameters);
- gpt2-small: GPT-2 small (12 layers, 12 heads, width 768);

it prints one table and a line of versions. Rows, each measured in a process of its own (so
that a row's peak memory holds its own tensors only: an attribution row's has no optimizer
state), on `--batch` ioi pairs, one warm-up call, then the fastest of two timed calls:

- train step: AdamW, forward + backward + step on the pairs' clean prompts;
- eap node / eap edge / eap-ig node m=5 / eap-ig edge m=5: `attribute`;

and, for the 2-layer and GPT-2 shapes (the model saved once), from wall times of whole runs
(model loading included in each):

- sft: `--steps` steps of plain SFT (`make_trainer(...).train()`); its ratio is per step;
- track every N: `trackers.run.track` with the same SFT and node and edge eap every N steps
  (N = `--every`, and N = `--steps`: checkpoints at 0 and the end); ratio: track / sft;
- checkpoint: the cost of one more checkpoint, (track every N - track every `--steps`) / the
  difference in checkpoints; ratio: in training steps;
- track fixed: what tracking adds besides its checkpoints, track - sft - checkpoints x cost;
- LoRA finetune step: a masked LoRA finetune (`static`, K = 8) per step, from runs of
  `--finetune-steps` and three times as many steps; ratio: in training steps;
- LoRA finetune fixed: that run's cost besides its steps.

Seconds: wall time (GPU work synchronised); peak MiB: torch.cuda.max_memory_allocated on a GPU,
the process's peak RSS on the CPU.

    python experiments/gpu_check.py                          # on the GPU, the shapes above
    python experiments/gpu_check.py --small --device cpu     # a smoke test of the script itself
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import peft
import torch
import transformers
from fresh_process import row_result
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedModel

from foresight.attribution import attribute
from foresight.encoding import encode_pairs
from foresight.models import SHIPPED, load_model, load_tokenizer
from foresight.sft import SFTConfig, make_trainer
from foresight.tasks import get_task
from foresight.updater import FinetuneConfig
from foresight.updater.finetune import finetune
from trackers.run import track
from trackers.tracker import TrackerSettings

ATTRIBUTION = {
    "eap node": ("eap", "node"),
    "eap edge": ("eap", "edge"),
    "eap-ig node m=5": ("eap-ig", "node"),
    "eap-ig edge m=5": ("eap-ig", "edge"),
}
TRACKED = ("llama3-8b-2l", "gpt2-small")  # the shapes whose SFT, tracking and finetune rows run


def shapes(small: bool) -> dict[str, Callable[[int], PreTrainedModel]]:
    """Model builders by name (`small`: the same families at toy sizes, for the CPU)."""
    llama = {"hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8}
    llama |= {"intermediate_size": 14336, "vocab_size": 128256}
    gpt2 = {"n_layer": 12, "n_head": 12, "n_embd": 768}
    depth = 32
    if small:
        llama = {"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2}
        llama |= {"intermediate_size": 128, "vocab_size": 4096}
        gpt2, depth = {"n_layer": 2, "n_head": 4, "n_embd": 64}, 3

    def llama_of(layers: int) -> Callable[[int], PreTrainedModel]:
        return lambda pad: LlamaForCausalLM(
            LlamaConfig(num_hidden_layers=layers, max_position_embeddings=256, pad_token_id=pad, **llama)
        )

    return {
        "llama3-8b-2l": llama_of(2),
        "llama3-8b-32l": llama_of(depth),
        "gpt2-small": lambda pad: GPT2LMHeadModel(GPT2Config(n_positions=256, pad_token_id=pad, **gpt2)),
    }


def build(name: str, small: bool, device: str) -> PreTrainedModel:
    """The bfloat16 model `name`, initialised (seed 0) on `device`, in eval mode."""
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # no float32 copy of the weights first
    try:
        with torch.device(device):
            model = shapes(small)[name](load_tokenizer(SHIPPED["default"]).pad_token_id)
    finally:
        torch.set_default_dtype(default)
    return model.eval()


def peak_mib(device: str) -> float:
    """The peak memory since the last reset (GPU) or of the process (CPU), in MiB."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(device: str, job: Callable[[], object]) -> float:
    """Wall seconds of `job`, GPU work included."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    job()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def operation_row(name: str, operation: str, args: argparse.Namespace) -> dict[str, float]:
    """{seconds, peak}: one training step or attribution pass on a freshly built model."""
    model = build(name, args.small, args.device)
    pairs = encode_pairs(load_tokenizer(SHIPPED["default"]), get_task("ioi").attribution_pairs(args.batch, 0))
    pairs = pairs.to(model.device)
    if operation == "train step":
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

        def job() -> None:
            model.train()
            model(input_ids=pairs.clean, labels=pairs.clean).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            model.eval()
    else:
        method, level = ATTRIBUTION[operation]

        def job() -> None:
            attribute(model, pairs, method=method, level=level, ig_steps=5)

    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    job()  # warm-up: kernels, allocator
    seconds = min(timed(args.device, job) for _ in range(2))
    return {"seconds": seconds, "peak": peak_mib(args.device)}


def run_row(kind: str, directory: Path, args: argparse.Namespace) -> dict[str, float]:
    """{seconds, peak}: one whole run on the model saved in `directory`: "sft", "track-N" (a
    checkpoint every N steps) or "finetune-N" (N steps)."""
    task = get_task("ioi")
    sft = SFTConfig(steps=args.steps, batch_size=args.batch, lr=1e-5, dtype="bfloat16", device=args.device)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        if kind == "sft":

            def job() -> None:
                model, tokenizer = load_model(directory, "bfloat16", args.device)
                make_trainer(model, tokenizer, [task], sft, Path(tmp) / "sft").train()
        elif kind.startswith("track-"):
            every = int(kind.split("-")[1])
            settings = TrackerSettings(every=every, n_pairs=args.batch, n_eval=32, circuit_size=8)

            def job() -> None:
                track(["ioi"], Path(tmp) / "run", str(directory), sft, settings)
        else:
            config = FinetuneConfig(
                strategy="static", model=str(directory), steps=int(kind.split("-")[1]), batch_size=args.batch,
                every=args.every, n_pairs=args.batch, n_eval=32, dtype="bfloat16", device=args.device,
                save_model=False,
            )  # fmt: skip

            def job() -> None:
                finetune(task, config, Path(tmp) / "finetune")

        return {"seconds": timed(args.device, job), "peak": peak_mib(args.device)}


def in_process(args: argparse.Namespace, *row: str) -> dict[str, float]:
    """The result of `--row ROW...` run in a fresh process of this script."""
    flags = ["--row", *row, "--device", args.device, "--batch", str(args.batch)]
    flags += ["--steps", str(args.steps), "--every", str(args.every), *(["--small"] if args.small else [])]
    return row_result(__file__, flags)


def checkpoints(steps: int, every: int) -> int:
    """The number of tracking checkpoints: step 0 and every `every` steps up to `steps`."""
    return 1 + steps // every


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=50, help="SFT steps of the tracking rows")
    parser.add_argument("--every", type=int, default=10, help="checkpoint cadence of the tracking rows")
    parser.add_argument("--finetune-steps", type=int, default=10)
    parser.add_argument("--small", action="store_true", help="toy sizes (a smoke test on the CPU)")
    parser.add_argument("--shapes", nargs="+", choices=list(shapes(False)), default=list(shapes(False)))
    parser.add_argument("--row", nargs="+", help=argparse.SUPPRESS)  # internal: one row, printed as JSON
    args = parser.parse_args()
    if args.row:
        name, kind, *rest = args.row
        result = run_row(kind, Path(rest[0]), args) if rest else operation_row(name, kind, args)
        print(json.dumps(result))
        return
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    print(
        f"{time.strftime('%Y-%m-%d')}  {gpu}  python {platform.python_version()}  torch {torch.__version__}"
        f"  transformers {transformers.__version__}  peft {peft.__version__}  bfloat16  batch {args.batch}"
    )
    print(f"{'model':<14} {'operation':<22} {'seconds':>9} {'ratio':>8} {'peak MiB':>9}")

    def show(name: str, operation: str, seconds: float, ratio: float, peak: float | None) -> None:
        cell = "-" if peak is None else f"{peak:.0f}"
        print(f"{name:<14} {operation:<22} {seconds:>9.3f} {ratio:>8.2f} {cell:>9}", flush=True)

    for name in args.shapes:
        train = in_process(args, name, "train step")
        show(name, "train step", train["seconds"], 1.0, train["peak"])
        for operation in ATTRIBUTION:
            row = in_process(args, name, operation)
            show(name, operation, row["seconds"], row["seconds"] / train["seconds"], row["peak"])
        if name not in TRACKED:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp) / name
            build(name, args.small, args.device).save_pretrained(directory)
            load_tokenizer(SHIPPED["default"]).save_pretrained(directory)
            sft = in_process(args, name, "sft", str(directory))
            per_step = sft["seconds"] / train["seconds"] / args.steps
            show(name, f"sft {args.steps} steps", sft["seconds"], per_step, sft["peak"])
            tracked = {}
            for every in (args.every, args.steps):
                tracked[every] = in_process(args, name, f"track-{every}", str(directory))
                row = tracked[every]
                show(
                    name, f"track every {every}", row["seconds"], row["seconds"] / sft["seconds"], row["peak"]
                )
            n, n_end = checkpoints(args.steps, args.every), checkpoints(args.steps, args.steps)
            each = (tracked[args.every]["seconds"] - tracked[args.steps]["seconds"]) / (n - n_end)
            show(name, "checkpoint", each, each / train["seconds"], None)
            fixed = tracked[args.every]["seconds"] - sft["seconds"] - n * each
            show(name, "track fixed", fixed, fixed / train["seconds"], None)
            short = in_process(args, name, f"finetune-{args.finetune_steps}", str(directory))
            long = in_process(args, name, f"finetune-{3 * args.finetune_steps}", str(directory))
            step = (long["seconds"] - short["seconds"]) / (2 * args.finetune_steps)
            show(name, "LoRA finetune step", step, step / train["seconds"], long["peak"])
            fixed = short["seconds"] - args.finetune_steps * step
            show(name, "LoRA finetune fixed", fixed, fixed / train["seconds"], None)


if __name__ == "__main__":
    main()
