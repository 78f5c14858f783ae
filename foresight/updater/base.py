"""`Updater`: what confines an optimizer's updates to a set of components.

An updater holds the components in force (`components`), can change them
(`set_components`: deselected entries keep the values they have then), counts
the entries that can change (`trainable_parameters`) and, once `attach`ed to an
optimizer, runs `enforce` after every step so that weight decay and Adam
moments cannot move masked entries. Implementations: `lora.MaskedLoRA` (PEFT),
`full.FullMask` (masked full-parameter SFT) and `Unrestricted` (plain SFT).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle


class Updater(ABC):
    """Confines the updates of `model` (the module the optimizer trains) to `components`."""

    model: nn.Module
    components: frozenset[str]

    @abstractmethod
    def set_components(self, components: Iterable[str]) -> None:
        """Confine further updates to `components`, keeping the update learnt so far."""

    @abstractmethod
    def enforce(self) -> None:
        """Restore every masked entry (run after every optimizer step)."""

    @abstractmethod
    def trainable_parameters(self) -> int:
        """How many entries of the model can change."""

    def attach(self, optimizer: torch.optim.Optimizer) -> RemovableHandle:
        """Run `enforce` after every step of `optimizer`."""
        return optimizer.register_step_post_hook(lambda *_: self.enforce())


class Unrestricted(Updater):
    """Plain SFT: every parameter that requires a gradient trains; nothing is masked."""

    def __init__(self, model: nn.Module, components: Iterable[str]) -> None:
        self.model, self.components = model, frozenset(components)

    def set_components(self, components: Iterable[str]) -> None:
        """Unrestricted SFT cannot be confined: ValueError."""
        raise ValueError("unrestricted SFT trains every parameter: it cannot re-select components")

    def enforce(self) -> None:
        """Nothing is masked."""

    def trainable_parameters(self) -> int:
        """Every entry of a parameter that requires a gradient."""
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)
