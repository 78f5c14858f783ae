"""Supervised fine-tuning on task examples with the transformers Trainer.

The loss is the cross-entropy of the answer token only (the prompt is
context). Several tasks are mixed by interleaving their examples. Instead of task
examples, a tokenized dataset (`foresight.sft_data`: input_ids and labels) can be the
training data. `mode` "lora" trains PEFT LoRA adapters (`apply_lora`) instead of every
weight. The Trainer's log dictionaries go to `train_log.jsonl` in its output directory, never to the
terminal; on a terminal, a progress bar shows the step, the loss and what the
caller's `status` adds (e.g. held-out accuracy).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import datasets
import torch
from peft import LoraConfig, get_peft_model
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.utils.data import Dataset
from transformers import (
    DataCollatorForSeq2Seq,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from foresight.config import SFTConfig
from foresight.encoding import answer_id, pad_right, prompt_ids
from foresight.tasks.base import Task

LOG_FILE = "train_log.jsonl"


def apply_lora(model: PreTrainedModel, config: SFTConfig) -> PreTrainedModel:
    """`model` with PEFT LoRA adapters as `config` says (its other weights frozen); unchanged
    in full mode."""
    if config.mode == "full":
        return model
    if config.mode != "lora":
        raise ValueError(f"mode {config.mode!r}: choose from full, lora")
    targets = list(config.lora_targets) if config.lora_targets else None
    lora = LoraConfig(
        r=config.lora_rank, lora_alpha=2 * config.lora_rank, lora_dropout=0.0, target_modules=targets
    )
    try:
        return get_peft_model(model, lora)
    except ValueError as e:  # e.g. a target module the model does not have
        raise ValueError(f"--lora-targets {','.join(targets or ['(default)'])}: {e}") from None


def check_lora(model: str, config: SFTConfig) -> None:
    """ValueError (naming --lora-targets) if PEFT cannot put `config`'s adapters on model `model`
    (a shipped name or directory), or one of the named targets matches no module of it (PEFT
    itself fails only when none does): tried target by target on its meta-device skeleton,
    before any weight is read."""
    if config.mode != "lora":
        return
    from transformers import AutoConfig

    from foresight.models import meta_skeleton, resolve_model_path

    model_config = AutoConfig.from_pretrained(resolve_model_path(model), local_files_only=True)
    for target in config.lora_targets or [None]:
        one = replace(config, lora_targets=None if target is None else (target,))
        with warnings.catch_warnings():  # PEFT's notes on the meta device are not for the user
            warnings.simplefilter("ignore")
            try:
                apply_lora(meta_skeleton(model_config), one)
            except ValueError as e:
                if target is None:
                    raise ValueError(f"{e} (model {model!r})") from None
                named = ",".join(config.lora_targets)
                raise ValueError(
                    f"--lora-targets {named}: model {model!r} has no module {target!r}"
                ) from None


class ExampleDataset(Dataset):
    """Tokenized SFT examples of one or more tasks, interleaved task by task."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, tasks: Sequence[Task], n_per_task: int, seed: int):
        per_task = [task.sft_examples(n_per_task, seed=seed) for task in tasks]
        self.rows = []
        for group in zip(*per_task, strict=True):
            for example in group:
                ids = prompt_ids(tokenizer, example.prompt) + [answer_id(tokenizer, example.answer)]
                self.rows.append(ids)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> list[int]:
        return self.rows[index]


class AnswerCollator:
    """Right-pads a batch; labels are -100 except at the final (answer) token."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[list[int]]) -> dict[str, torch.Tensor]:
        input_ids = pad_right(rows, self.pad_id)
        labels = torch.full_like(input_ids, -100)
        for i, row in enumerate(rows):
            labels[i, len(row) - 1] = row[-1]
        return {"input_ids": input_ids, "labels": labels}


class TrainingLog(TrainerCallback):
    """Appends every Trainer log dict (with its step) to `file` as a JSON line, and, when
    `console` is a terminal, shows a progress bar: step / steps, the last loss, and the
    figures `status()` returns (name -> value), refreshed at every logging step. Under DDP only
    rank 0 writes and shows the bar."""

    def __init__(
        self,
        file: Path,
        status: Callable[[], Mapping[str, float]] | None = None,
        console: Console | None = None,
    ) -> None:
        self.file, self.status = file, status
        self.console = console or Console(stderr=True)
        self.progress: Progress | None = None
        self.bar = None
        self.figures: dict[str, float] = {}

    def _text(self) -> str:
        figures = {**self.figures, **(self.status() if self.status is not None else {})}
        return "  ".join(f"{k} {v:.3f}" for k, v in figures.items())

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        if self.console.is_terminal and state.is_world_process_zero:
            columns = (
                TextColumn("SFT"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[figures]}"),
            )
            self.progress = Progress(*columns, TimeRemainingColumn(), console=self.console, transient=True)
            self.progress.start()
            self.bar = self.progress.add_task(
                "sft", total=state.max_steps, completed=state.global_step, figures=""
            )

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if self.progress is not None:
            self.progress.update(self.bar, completed=state.global_step, figures=self._text())

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if not logs or not state.is_world_process_zero:
            return
        self.file.parent.mkdir(parents=True, exist_ok=True)
        with self.file.open("a") as f:
            f.write(json.dumps({"step": state.global_step, **logs}, default=str) + "\n")
        if "loss" in logs:
            self.figures["loss"] = float(logs["loss"])

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def make_trainer(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    tasks: Sequence[Task],
    config: SFTConfig,
    output_dir: str | Path,
    callbacks: Sequence[TrainerCallback] = (),
    save_steps: int | None = None,
    optimizers: tuple[torch.optim.Optimizer | None, torch.optim.lr_scheduler.LRScheduler | None] = (
        None,
        None,
    ),
    status: Callable[[], Mapping[str, float]] | None = None,
    train_data: datasets.Dataset | None = None,
) -> Trainer:
    """A Trainer for `config.steps` steps of answer-only SFT on `tasks`, on the model's device.

    Mixed precision follows the model's dtype: bfloat16 weights train under bf16 autocast,
    float16 weights (LoRA only: their adapters are float32) under fp16 autocast with a
    gradient scaler on a GPU; float32 weights in float32.

    `save_steps` enables Trainer checkpoints (for resuming); off by default. `optimizers`
    (optimizer, scheduler) replaces the ones the Trainer would build (None: build it).
    Its log goes to `output_dir/train_log.jsonl` (`TrainingLog`, with `status` on the bar).
    With `train_data` (input_ids and labels, `foresight.sft_data`), the model trains on it
    (rows right-padded per batch) instead of on the tasks' examples."""
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=config.steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.lr,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_steps,
        lr_scheduler_type="linear",
        seed=config.seed,
        data_seed=config.seed,
        logging_steps=max(1, config.steps // 20),
        save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or 500,
        report_to=[],
        use_cpu=model.device.type == "cpu",
        bf16=model.dtype == torch.bfloat16,
        fp16=model.dtype == torch.float16 and model.device.type == "cuda",
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,  # every trainable parameter takes part in the forward
        disable_tqdm=True,
    )
    if train_data is None:
        dataset, collator = ExampleDataset(tokenizer, tasks, config.examples_per_task, config.seed), None
    else:
        dataset, collator = train_data, DataCollatorForSeq2Seq(tokenizer, padding=True)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collator or AnswerCollator(tokenizer.pad_token_id),
        callbacks=[*callbacks, TrainingLog(Path(output_dir) / LOG_FILE, status)],
        optimizers=optimizers,
    )
    trainer.remove_callback(PrinterCallback)  # it prints the raw log dicts
    trainer.remove_callback(ProgressCallback)
    return trainer
