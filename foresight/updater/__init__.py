"""Fine-tuning restricted to chosen circuit components: updaters (masked LoRA on PEFT,
masked full-parameter SFT), the strategy registry, and one run (`finetune`) or a
comparison of strategies (`compare`).

The names below are imported on first use (`foresight.updater.config`, which the command line
reads at start-up, does not pull in PEFT and the Trainer)."""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "Unrestricted": "base", "Updater": "base", "FinetuneConfig": "config", "FullMask": "full",
    "apply_gradient_masks": "full", "MaskedLoRA": "lora", "apply_masked_lora": "lora",
    "STRATEGIES": "strategies", "Strategy": "strategies", "kind_counts": "strategies",
    "select_random": "strategies", "strategy_class": "strategies",
}  # fmt: skip
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    """`name` from its module of this package (PEP 562)."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
