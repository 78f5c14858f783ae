"""The GPU check: what Foresight costs on real model shapes, in one short run (experiments/gpu_check.sh).

On randomly initialised models of two shapes (no hub: built from transformers config classes,
saved with the shipped word-level tokenizer, whose ids all lie inside their vocabularies):

- llama3-8b-2l: Llama-3-8B's layer shapes (hidden 4096, 32 heads, 8 KV heads, MLP 14336,
  vocab 128256) with `--layers` layers, in bfloat16;
- gpt2-small: GPT-2 small (12 layers, 12 heads, width 768), in bfloat16;

it times one training step (AdamW, forward + backward + step on the batch), node and edge eap,
node eap-ig (m = 5), a tracked SFT (`trackers.run.track`, `--steps` steps, a checkpoint every
other step, node and edge eap) and a masked LoRA finetune (`static`, K = 8), and prints one
table: seconds, the ratio to the training step and the peak memory (GPU:
torch.cuda.max_memory_allocated; CPU: the peak RSS of the process so far).

    python experiments/gpu_check.py                         # on the GPU, the shapes above
    python experiments/gpu_check.py --small --device cpu    # a smoke test of the script itself
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedModel

from foresight.attribution import attribute
from foresight.encoding import encode_pairs
from foresight.models import SHIPPED, load_model, load_tokenizer
from foresight.sft import SFTConfig
from foresight.tasks import get_task
from foresight.updater import FinetuneConfig
from foresight.updater.finetune import finetune
from trackers.run import track
from trackers.tracker import TrackerSettings


def shapes(layers: int, small: bool) -> dict[str, Callable[[int], PreTrainedModel]]:
    """Model builders by name (`small`: the same families at toy sizes, for the CPU)."""
    llama = {"hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8}
    llama |= {"intermediate_size": 14336, "vocab_size": 128256}
    gpt2 = {"n_layer": 12, "n_head": 12, "n_embd": 768}
    if small:
        llama = {"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2}
        llama |= {"intermediate_size": 128, "vocab_size": 4096}
        gpt2 = {"n_layer": 2, "n_head": 4, "n_embd": 64}
    return {
        f"llama3-8b-{layers}l": lambda pad: LlamaForCausalLM(
            LlamaConfig(num_hidden_layers=layers, max_position_embeddings=256, pad_token_id=pad, **llama)
        ),
        "gpt2-small": lambda pad: GPT2LMHeadModel(GPT2Config(n_positions=256, pad_token_id=pad, **gpt2)),
    }


def peak_mib(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(device: str, job: Callable[[], object]) -> tuple[float, float]:
    """(seconds, peak MiB during `job`)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    job()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, peak_mib(device)


def time_operations(name: str, directory: Path, device: str, batch: int) -> list[tuple]:
    """Rows of a training step and the attribution passes on `batch` ioi pairs."""
    model, tokenizer = load_model(directory, "bfloat16", device)
    pairs = encode_pairs(tokenizer, get_task("ioi").attribution_pairs(batch, seed=0)).to(model.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def train_step() -> None:
        model.train()
        model(input_ids=pairs.clean, labels=pairs.clean).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        model.eval()

    def attribution(method: str, level: str) -> Callable[[], object]:
        return lambda: attribute(model, pairs, method=method, level=level, ig_steps=5)

    jobs = {
        "train step": train_step,
        "eap node": attribution("eap", "node"),
        "eap edge": attribution("eap", "edge"),
        "eap-ig node m=5": attribution("eap-ig", "node"),
    }
    for job in jobs.values():  # warm-up: kernels, allocator
        job()
    rows, train = [], None
    for op, job in jobs.items():
        seconds, peak = timed(device, job)
        train = train or seconds
        rows.append((name, op, seconds, seconds / train, peak))
    return rows


def check_model(name: str, directory: Path, device: str, batch: int, steps: int) -> list[tuple]:
    """The table rows of one model saved in `directory`."""
    rows = time_operations(name, directory, device, batch)
    train = rows[0][2]
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    task = get_task("ioi")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        sft = SFTConfig(steps=steps, batch_size=batch, lr=1e-5, dtype="bfloat16", device=device)
        settings = TrackerSettings(every=2, n_pairs=batch, n_eval=32, circuit_size=8)
        run_dir = Path(tmp) / "run"
        seconds, peak = timed(device, lambda: track(["ioi"], run_dir, str(directory), sft, settings))
        rows.append((name, f"tracked SFT {steps} steps", seconds, seconds / train / steps, peak))
        config = FinetuneConfig(
            strategy="static", model=str(directory), steps=steps, batch_size=batch, every=2, n_pairs=batch,
            n_eval=32, dtype="bfloat16", device=device, save_model=False,
        )  # fmt: skip
        seconds, peak = timed(device, lambda: finetune(task, config, Path(tmp) / "finetune"))
        rows.append((name, f"LoRA finetune {steps} steps", seconds, seconds / train / steps, peak))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--small", action="store_true", help="toy sizes (a smoke test on the CPU)")
    args = parser.parse_args()
    tokenizer = load_tokenizer(SHIPPED["default"])
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    print(f"{time.strftime('%Y-%m-%d')}  {gpu}  torch {torch.__version__}  bfloat16  batch {args.batch}")
    print("ratio: to one training step; for the SFT and finetune rows, per step")
    print(f"{'model':<14} {'operation':<24} {'seconds':>8} {'ratio':>7} {'peak MiB':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, build in shapes(args.layers, args.small).items():
            torch.manual_seed(0)
            directory = Path(tmp) / name
            with torch.device(args.device):  # random initialisation where it is fast
                model = build(tokenizer.pad_token_id).to(torch.bfloat16)
            model.save_pretrained(directory)
            del model
            tokenizer.save_pretrained(directory)
            for row in check_model(name, directory, args.device, args.batch, args.steps):
                print(f"{row[0]:<14} {row[1]:<24} {row[2]:>8.3f} {row[3]:>7.2f} {row[4]:>9.0f}", flush=True)


if __name__ == "__main__":
    main()
