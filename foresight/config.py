"""What every settings record shares: its error, and fields that carry their own range and help.

A settings record (`SFTConfig`, `FinetuneConfig`, `TrackerSettings`, `ForecastProblem`,
`SweepConfig`; this module holds `SFTConfig`, light to import, as the command line needs
it before any model code) is the one home of its fields' defaults, ranges and help texts, declared with
`setting` (in the fields' metadata, as PEFT's `LoraConfig` keeps its help). `check_settings`
checks a record against them and raises `ConfigError(field, message)`, which the app renders as
`error: --field-name: message`; the app also builds its command-line options from the fields
(`foresight.app.options`), so a default or a help text has one home.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import Field, dataclass, field, fields
from typing import Any

MAX_SEED = 2**32 - 1  # seeds are what numpy and torch accept: 0..MAX_SEED
DTYPE_NAMES = ("float32", "bfloat16", "float16", "float64")  # the weights' dtypes (`foresight.models.DTYPES`)
DTYPE_HELP = "weights: float32, bfloat16, float16 or float64 (scores accumulate in float32)"
DEVICE_HELP = "auto (the GPU when there is one), cpu, cuda or cuda:N"
LEVELS = ("node", "edge")  # attribution levels


class ConfigError(ValueError):
    """A setting out of its range: `field` names it, `message` says what is wrong (and the value)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def setting(
    default: Any,
    help: str = "",
    *,
    at_least: float | None = None,
    at_most: float | None = None,
    choices: Sequence[str] | None = None,
    finite: bool = False,
    above: float | None = None,
) -> Any:
    """A dataclass field with its `default`, `help` and range in its metadata: at least
    `at_least`, at most `at_most`, above `above`, `finite`, one of `choices` (None, where
    allowed by the field's type, is always in range)."""
    rules = {"at_least": at_least, "at_most": at_most, "choices": choices, "above": above}
    metadata = {"help": help, "finite": finite, **{k: v for k, v in rules.items() if v is not None}}
    return field(default=default, metadata=metadata)


def seed_setting(help: str = "random seed") -> Any:
    """A seed field: 0 by default, in 0..MAX_SEED."""
    return setting(0, help, at_least=0, at_most=MAX_SEED)


def range_error(f: Field, value: Any) -> str | None:
    """What is wrong with `value` for field `f` (its metadata's range), or None."""
    rules = f.metadata
    if value is None:
        return None
    if "choices" in rules and value not in rules["choices"]:
        return f"choose from {', '.join(map(str, rules['choices']))}, not {value!r}"
    if rules.get("finite") and not math.isfinite(value):
        return f"must be a finite number, not {value}"
    if "above" in rules and not (math.isfinite(value) and value > rules["above"]):
        return f"must be a finite number above {rules['above']:g}, not {value}"
    low, high = rules.get("at_least"), rules.get("at_most")
    if low is not None and high is not None and not low <= value <= high:
        return f"must be in {low}..{high}, not {value}"
    if low is not None and value < low:
        return f"must be at least {low}, not {value}"
    if high is not None and value > high:
        return f"must be at most {high}, not {value}"
    return None


def check_settings(record: object) -> None:
    """ConfigError for the first field of dataclass `record` whose value is out of its range."""
    for f in fields(record):
        message = range_error(f, getattr(record, f.name))
        if message is not None:
            raise ConfigError(f.name, message)


def help_of(record_type: type, name: str) -> str:
    """The help text of field `name` of dataclass `record_type`."""
    return next(f.metadata.get("help", "") for f in fields(record_type) if f.name == name)


@dataclass(frozen=True)
class SFTConfig:
    """Settings of one SFT run (the defaults are the README's standard run); `dtype` and
    `device` are how the model is loaded (`foresight.models.load_model`), `batch_size` is per
    process (under torchrun the global batch is `batch_size` x processes) and `grad_accum`
    batches make one step. `mode` is full (every weight) or lora: PEFT LoRA adapters of rank
    `lora_rank` (alpha 2 x rank, no dropout) on the modules named `lora_targets` (None: PEFT's
    default for the model family, e.g. q_proj and v_proj for Llama)."""

    steps: int = setting(200, "SFT steps", at_least=1)
    batch_size: int = setting(32, "examples per step and process", at_least=1)
    lr: float = setting(1e-3, "learning rate", above=0)
    weight_decay: float = setting(0.0, "AdamW weight decay", at_least=0, finite=True)
    warmup_steps: int = setting(10, "linear warm-up steps", at_least=0)
    examples_per_task: int = setting(4000, "training examples drawn per task", at_least=1)
    seed: int = seed_setting()
    dtype: str = setting("float32", DTYPE_HELP, choices=tuple(DTYPE_NAMES))
    device: str = setting("auto", DEVICE_HELP)
    grad_accum: int = setting(1, "batches per optimizer step", at_least=1)
    mode: str = setting(
        "full", "full or lora (PEFT adapters; the adapted model is tracked)", choices=("full", "lora")
    )
    lora_rank: int = setting(8, "LoRA rank (alpha is twice the rank)", at_least=1)
    lora_targets: tuple[str, ...] | None = setting(None, "LoRA modules, comma-separated (default: PEFT's)")

    def __post_init__(self) -> None:
        check_settings(self)
