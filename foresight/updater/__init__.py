"""Fine-tuning restricted to chosen circuit components: component -> parameter
masks, masked LoRA (PEFT), masked full-parameter SFT and selection strategies."""

from foresight.updater.full import FullMask, apply_gradient_masks
from foresight.updater.lora import MaskedLoRA, apply_masked_lora
from foresight.updater.masks import ComponentMap, Target, model_family
from foresight.updater.strategies import (
    kind_counts,
    select_free,
    select_from_scores,
    select_random,
    select_static,
)

__all__ = [
    "ComponentMap",
    "FullMask",
    "MaskedLoRA",
    "Target",
    "apply_gradient_masks",
    "apply_masked_lora",
    "kind_counts",
    "model_family",
    "select_free",
    "select_from_scores",
    "select_random",
    "select_static",
]
