"""Bounds on size arguments, from an estimate of memory and of the data.

A size argument (`--n-pairs`, `evaluate --n`, `--batch-size`) is refused when what it asks for
would not fit in the available memory (`available_memory`, an estimate of the bytes the work
holds at once) or exceeds the data there is (the distinct lines of a JSONL task, the examples of
a training set). Each check raises a ValueError naming the option; nothing is loaded but the
model's config and tokenizer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from foresight.attribution.memory import attribution_bytes, prompt_tokens
from foresight.models import available_memory

if TYPE_CHECKING:
    from transformers import PretrainedConfig

    from foresight.tasks import Task

# bytes one held-out example and its attribution pair take as Python objects: measured with
# tracemalloc on 20,000 of ioi, arithmetic and docstring, 0.70-0.75 KiB at the peak
EXAMPLE_BYTES = 1024


def _config(model: str) -> PretrainedConfig:
    from transformers import AutoConfig

    from foresight.models import resolve_model_path

    return AutoConfig.from_pretrained(resolve_model_path(model), local_files_only=True)


def check_n_pairs(n_pairs: int, model: str, tasks: Sequence[Task]) -> None:
    """Refuse `--n-pairs` whose attribution pass would not fit in the available memory."""
    from foresight.models import load_tokenizer

    need = attribution_bytes(model, n_pairs, prompt_tokens(load_tokenizer(model), tasks))
    check_fits("--n-pairs", n_pairs, need, "attribution")


def forward_bytes(model: str, rows: int, tokens: int, backward: bool) -> int:
    """An estimate of the memory of one forward pass (with `backward`: kept for the backward,
    and the gradients) over `rows` sequences of `tokens` tokens: per token, each layer's
    attention weights, MLP hidden state and residual writes, and the logits, in float32."""
    c = _config(model)
    d, layers, heads = c.hidden_size, c.num_hidden_layers, c.num_attention_heads
    inner = getattr(c, "intermediate_size", None) or getattr(c, "n_inner", None) or 4 * d
    per_token = layers * (heads * tokens + 2 * inner + 6 * d) + 2 * c.vocab_size
    return 4 * rows * tokens * per_token * (3 if backward else 1)


def check_fits(option: str, value: int, need: int, what: str) -> None:
    """ValueError if `need` bytes (what `option` `value` asks for) exceed the available memory."""
    have = available_memory()
    if need > have:
        raise ValueError(
            f"{option} {value}: {what} would need about {need / 2**30:.1f} GiB, "
            f"{have / 2**30:.1f} GiB are available"
        )


def distinct_eval_lines(task: Task) -> int | None:
    """The number of distinct held-out pairs of a JSONL task (None for a generated task)."""
    from foresight.tasks import JsonlTask

    if not isinstance(task, JsonlTask):
        return None
    return len({line.pair for line in task.lines if line.split == "eval"})


def check_no_repeated_lines(tasks: Sequence[Task]) -> None:
    """ValueError naming file:line for a JSONL task with a line whose pair (clean, corrupted,
    answer, wrong) repeats an earlier line: a repeat counts one example twice."""
    from foresight.tasks import JsonlTask

    for task in tasks:
        if not isinstance(task, JsonlTask):
            continue
        first: dict[object, int] = {}
        for line in task.lines:
            if line.pair in first:
                copies = Counter(other.pair for other in task.lines)[line.pair]
                raise ValueError(
                    f"{task.path}:{line.number}: repeats line {first[line.pair]} ({copies} copies of one "
                    "pair; each line must be a distinct example)"
                )
            first[line.pair] = line.number


def check_eval_n(n: int, model: str, tasks: Sequence[Task]) -> None:
    """Refuse `evaluate --n` beyond the distinct held-out lines of a JSONL task (a larger draw
    repeats them), or whose examples and two-way forward pass (all pairs at once) would not fit
    in the available memory."""
    from foresight.models import load_tokenizer

    for task in tasks:
        distinct = distinct_eval_lines(task)
        if distinct is not None and n > distinct:
            raise ValueError(
                f"--n {n}: task {task.name!r} has {distinct} distinct held-out lines "
                f"({getattr(task, 'path', task.name)}); ask for at most {distinct}"
            )
    tokens = prompt_tokens(load_tokenizer(model), tasks, 16)
    need = len(tasks) * n * EXAMPLE_BYTES + forward_bytes(model, n, tokens, backward=False)
    check_fits("--n", n, need, "evaluation")


def check_batch_size(batch_size: int, model: str, examples: int, tokens: int) -> None:
    """Refuse `--batch-size` larger than the training set (`examples` rows), or whose training
    step (forward and backward over one batch of `tokens`-token rows) would not fit in the
    available memory."""
    if batch_size > examples:
        raise ValueError(f"--batch-size {batch_size}: larger than the {examples} training examples")
    check_fits("--batch-size", batch_size, forward_bytes(model, batch_size, tokens, backward=True), "a step")


def task_batch_shape(model: str, tasks: Sequence[Task], examples_per_task: int) -> tuple[int, int]:
    """(training examples, tokens per row) of SFT on the tasks' own examples."""
    from foresight.models import load_tokenizer

    return examples_per_task * len(tasks), prompt_tokens(load_tokenizer(model), tasks, 16) + 1
