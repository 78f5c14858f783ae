"""Supervised fine-tuning on task examples with the transformers Trainer.

The loss is the cross-entropy of the answer token only (the prompt is
context). Several tasks are mixed by interleaving their examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainerCallback, TrainingArguments

from foresight.encoding import answer_id, pad_right, prompt_ids
from foresight.tasks.base import Task


@dataclass(frozen=True)
class SFTConfig:
    """Settings of one SFT run (the defaults are the README's standard run)."""

    steps: int = 200
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 10
    examples_per_task: int = 4000
    seed: int = 0


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
) -> Trainer:
    """A Trainer for `config.steps` steps of answer-only SFT on `tasks`.

    `save_steps` enables Trainer checkpoints (for resuming); off by default. `optimizers`
    (optimizer, scheduler) replaces the ones the Trainer would build (None: build it)."""
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=config.steps,
        per_device_train_batch_size=config.batch_size,
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
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    dataset = ExampleDataset(tokenizer, tasks, config.examples_per_task, config.seed)
    return Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=AnswerCollator(tokenizer.pad_token_id),
        callbacks=list(callbacks),
        optimizers=optimizers,
    )
