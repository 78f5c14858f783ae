"""Full-parameter fine-tuning masked to chosen heads and MLPs (the seed study's
"Mech" and "Random" updates).

Every parameter without a selected entry is frozen (requires_grad False:
embeddings, norms, lm_head and the projections of unselected components).
Within a trainable parameter the selected entries follow `architectures.parameters.ComponentMap`
(rows of q/k/v, columns of the output projection, whole MLPs; a bias follows
its rows). Gradients are multiplied by the mask, and `enforce` (run after every
optimizer step once `attach`ed) writes back the values the masked entries had
when they were last deselected, so weight decay and Adam moments cannot move them.
Memory: a copy of the masked entries of every trainable parameter.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from foresight.architectures.parameters import AxisMask, ComponentMap, parameter_axis_masks
from foresight.updater.base import Updater


class FullMask(Updater):
    """Gradient masks on a model's own parameters, confining updates to `components`.

    With `dynamic` every attention and MLP parameter stays trainable (masked), so
    that `set_components` can later select any component; otherwise only the
    parameters of the initial components can be selected again."""

    def __init__(self, model: nn.Module, components: Iterable[str], dynamic: bool = False) -> None:
        self.model = model
        self.component_map = ComponentMap(model)
        self.dynamic = dynamic
        selected = self.component_map.validate(components)
        params = dict(model.named_parameters())
        masks = self._axis_masks(selected)
        self._params: dict[str, nn.Parameter] = {}
        for param in model.parameters():
            param.requires_grad_(False)
        for key, mask in masks.items():
            if dynamic or mask.keep.any():
                param = params[key]
                param.requires_grad_(True)
                param.register_hook(lambda grad, key=key: grad * self._grad_mask(key, grad))
                self._params[key] = param
        if not self._params:
            raise ValueError("no components selected: nothing to train")
        self._masks: dict[str, AxisMask] = {}
        self._frozen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.components: frozenset[str] = frozenset()
        self.set_components(selected)

    def _axis_masks(self, components: frozenset[str]) -> dict[str, AxisMask]:
        features = self.component_map.feature_masks(components)
        return {
            f"{target.name}.{kind}": mask
            for target in self.component_map.targets
            for kind, mask in parameter_axis_masks(target, features[target.name]).items()
        }

    def _grad_mask(self, key: str, grad: torch.Tensor) -> torch.Tensor:
        return self._masks[key].broadcast(grad.ndim).to(grad.dtype)

    @torch.no_grad()
    def set_components(self, components: Iterable[str]) -> None:
        """Confine further updates to `components`; deselected entries keep their current values.

        ValueError names selected components whose parameters were frozen at construction."""
        selected = self.component_map.validate(components)
        masks = self._axis_masks(selected)
        frozen = sorted(
            c
            for c in selected
            if any(f"{t.name}.weight" not in self._params for t in self.component_map.targets_of(c))
        )
        if frozen:
            raise ValueError(f"components {frozen} have frozen parameters; build with dynamic=True")
        for key, param in self._params.items():
            mask = AxisMask(masks[key].dim, masks[key].keep.to(param.device))
            index = (~mask.keep).nonzero().squeeze(1)
            self._masks[key] = mask
            self._frozen[key] = (index, param.index_select(mask.dim, index).clone())
        self.components = selected

    @torch.no_grad()
    def enforce(self) -> None:
        """Restore the masked entries to their frozen values (run after every optimizer step)."""
        for key, param in self._params.items():
            index, values = self._frozen[key]
            param.index_copy_(self._masks[key].dim, index, values)

    def trainable_parameters(self) -> int:
        """Entries of the model that can change."""
        total = 0
        for key, param in self._params.items():
            mask = self._masks[key]
            total += int(mask.keep.sum()) * param.numel() // param.shape[mask.dim]
        return total


def apply_gradient_masks(model: nn.Module, components: Iterable[str], dynamic: bool = False) -> FullMask:
    """Freeze `model` (in place) except the entries that `components` own; see `FullMask`."""
    return FullMask(model, components, dynamic)
