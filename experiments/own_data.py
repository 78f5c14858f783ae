"""Your own data and trainer, offline: TRL's SFTTrainer fine-tunes the default model on the
generated instruction dataset (experiments/instruction_data.py: chat conversations, a quarter
of them IOI questions) while `CircuitTracker.for_model` tracks the circuits of ioi (which the
data exercises) and gender (which it does not).

    python experiments/own_data.py [--steps 60] [--every 10] [--out runs/own-data]

Prints, per checkpoint, each task's held-out accuracy and Circuit Distance from step 0 (all
components), and the Circuit Conflict between the two tasks; writes the table to
experiments/results/own_data.md. The tracker logs into an MLflow run of its own (experiment
foresight-track; MLFLOW_TRACKING_URI, else ./mlflow.db).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import datasets
import mlflow
import pandas as pd
import torch
from instruction_data import CHAT_TEMPLATE, DATA, conversations
from trl import SFTConfig, SFTTrainer

from foresight.mlflow_log import resolve_tracking_uri
from foresight.models import load_model
from trackers.tracker import CircuitTracker

RESULTS = Path(__file__).parent / "results"
TASKS = ("ioi", "gender")


def table(tracker: CircuitTracker) -> pd.DataFrame:
    """Step, accuracy and CD from step 0 of every task, CC between the two."""
    a, b = (tracker.metrics_frame(t).set_index("step") for t in TASKS)
    columns = {f"{TASKS[0]} accuracy": a.accuracy, f"{TASKS[1]} accuracy": b.accuracy}
    columns |= {f"{TASKS[0]} CD": a.cd_start_all, f"{TASKS[1]} CD": b.cd_start_all}
    columns[f"CC({TASKS[0]}, {TASKS[1]})"] = a[f"cc_{TASKS[1]}"]
    return pd.DataFrame(columns).reset_index()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--n-pairs", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/own-data"))
    args = parser.parse_args()
    if not DATA.is_file():
        DATA.parent.mkdir(parents=True, exist_ok=True)
        DATA.write_text("".join(json.dumps(row) + "\n" for row in conversations()))
    shutil.rmtree(args.out, ignore_errors=True)
    mlflow.set_tracking_uri(resolve_tracking_uri())
    torch.manual_seed(args.seed)

    model, tokenizer = load_model("default", "float32", "cpu")
    tokenizer.chat_template = CHAT_TEMPLATE
    rows = [json.loads(line) for line in DATA.read_text().splitlines()]
    tracker = CircuitTracker.for_model(
        model, tokenizer, TASKS, args.out, every=args.every, n_pairs=args.n_pairs, seed=args.seed,
        levels=("node",),
    )  # fmt: skip
    config = SFTConfig(
        output_dir=str(args.out / "trainer"), max_steps=args.steps,
        per_device_train_batch_size=args.batch_size, learning_rate=args.lr, warmup_steps=5,
        seed=args.seed, assistant_only_loss=True, bf16=False, gradient_checkpointing=False,
        use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True, logging_steps=args.every,
    )  # fmt: skip
    trainer = SFTTrainer(
        model=model, args=config, train_dataset=datasets.Dataset.from_list(rows), processing_class=tokenizer,
        callbacks=[tracker],
    )  # fmt: skip
    start = time.perf_counter()
    trainer.train()
    result = table(tracker)
    text = result.to_markdown(index=False, floatfmt=[".0f"] + [".3f"] * (result.shape[1] - 1))
    heading = (
        f"TRL SFTTrainer on {len(rows)} generated conversations ({DATA.name}), default model, "
        f"{args.steps} steps of batch {args.batch_size}, lr {args.lr}, seed {args.seed}; tracked: "
        f"{', '.join(TASKS)} (node EAP, {args.n_pairs} pairs, k = 10); {time.perf_counter() - start:.0f} s"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "own_data.md").write_text(f"{heading}\n\n{text}\n")
    print(heading, text, sep="\n\n")


if __name__ == "__main__":
    main()
