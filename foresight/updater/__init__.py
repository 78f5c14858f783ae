"""Fine-tuning restricted to chosen circuit components: updaters (masked LoRA on PEFT,
masked full-parameter SFT), the strategy registry, and one run (`finetune`) or a
comparison of strategies (`compare`)."""

from foresight.updater.base import Unrestricted, Updater
from foresight.updater.config import FinetuneConfig
from foresight.updater.full import FullMask, apply_gradient_masks
from foresight.updater.lora import MaskedLoRA, apply_masked_lora
from foresight.updater.strategies import STRATEGIES, Strategy, kind_counts, select_random, strategy_class

__all__ = [
    "STRATEGIES",
    "FinetuneConfig",
    "FullMask",
    "MaskedLoRA",
    "Strategy",
    "Unrestricted",
    "Updater",
    "apply_gradient_masks",
    "apply_masked_lora",
    "kind_counts",
    "select_random",
    "strategy_class",
]
