"""LoRA (PEFT) restricted to chosen heads and MLPs.

For a target with LoRA factors A [r, in] and B [out, r] the update is
delta = B @ A * scaling ([out, in]). Features on the output axis (q/k/v, MLP
linears) are masked through the rows of B; features on the input axis (the
attention output projection) through the columns of A. Masked entries start at
zero, their gradients are multiplied by the mask, and `enforce` (run after every
optimizer step once `attach`ed) zeroes them again, so weight decay and Adam
moments cannot move them: delta is exactly zero outside the selected features.

Initialisation: q/k/v and MLPs as PEFT (A random, B zero); output projections
mirrored (B random, A zero), so that newly selected columns always receive a
gradient. Deselecting features (`set_components`) folds their current delta
into the frozen base weight and zeroes their factor entries: their merged
weights stay exactly as they were at the switch, whatever the shared factor
does afterwards. The adapter alone then no longer holds the whole update: use
`merged_state_dict` or PEFT's `merge_and_unload`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from torch import nn

from foresight.architectures.parameters import ComponentMap, Target, parameter_axis_masks
from foresight.updater.base import Updater

ADAPTER = "default"


class MaskedLoRA(Updater):
    """A PEFT model whose LoRA update is confined to `components`."""

    def __init__(
        self,
        model: PeftModel,
        component_map: ComponentMap,
        components: Iterable[str],
        rank: int,
        dynamic: bool,
    ) -> None:
        self.model = model
        self.component_map = component_map
        self.rank = rank
        self.dynamic = dynamic
        self._layers: dict[str, tuple[Target, LoraLayer]] = {}
        for target in component_map.targets:
            module = model.get_base_model().get_submodule(target.name)
            if isinstance(module, LoraLayer):
                self._layers[target.name] = (target, module)
        for name, (target, layer) in self._layers.items():
            if target.axis == "in":
                with torch.no_grad():
                    nn.init.kaiming_uniform_(layer.lora_B[ADAPTER].weight, a=math.sqrt(5))
                    layer.lora_A[ADAPTER].weight.zero_()
            self._factor(name)[0].register_hook(lambda grad, name=name: self._mask_grad(name, grad))
        self._features: dict[str, torch.Tensor] = {}
        self.components: frozenset[str] = frozenset()
        self.set_components(components)

    def _factor(self, name: str) -> tuple[nn.Parameter, int]:
        """The masked LoRA factor of a target and the dim its features run along."""
        target, layer = self._layers[name]
        if target.axis == "out":
            return layer.lora_B[ADAPTER].weight, 0
        return layer.lora_A[ADAPTER].weight, 1

    def _mask_grad(self, name: str, grad: torch.Tensor) -> torch.Tensor:
        _, dim = self._factor(name)
        keep = self._features[name].view([-1, 1] if dim == 0 else [1, -1])
        return grad * keep.to(grad.dtype)

    def _fold(self, name: str, dropped: torch.Tensor) -> None:
        """Add the delta of the `dropped` features to the base weight and zero their factor entries."""
        target, layer = self._layers[name]
        base = layer.get_base_layer().weight
        mask = parameter_axis_masks(target, dropped)["weight"].broadcast(base.ndim)
        base.add_(layer.get_delta_weight(ADAPTER) * mask.to(base.dtype))
        factor, dim = self._factor(name)
        factor.index_fill_(dim, dropped.nonzero().squeeze(1), 0.0)

    @torch.no_grad()
    def set_components(self, components: Iterable[str]) -> None:
        """Confine further updates to `components`, keeping the update learnt so far.

        Only targets that carry LoRA can take selected features (all of them with
        `dynamic=True`); ValueError names the components that would need others."""
        selected = self.component_map.validate(components)
        features = self.component_map.feature_masks(selected)
        uncovered = sorted(
            c for c in selected if any(t.name not in self._layers for t in self.component_map.targets_of(c))
        )
        if uncovered:
            raise ValueError(f"components {uncovered} lie outside the LoRA modules; build with dynamic=True")
        for name in self._layers:
            new = features[name].to(self._factor(name)[0].device)
            old = self._features.get(name)
            if old is not None and (old & ~new).any():
                self._fold(name, old & ~new)
            self._features[name] = new
        self.components = selected
        self.enforce()

    @torch.no_grad()
    def enforce(self) -> None:
        """Zero the masked factor entries (run after every optimizer step)."""
        for name in self._layers:
            factor, dim = self._factor(name)
            factor.index_fill_(dim, (~self._features[name]).nonzero().squeeze(1), 0.0)

    def trainable_parameters(self) -> int:
        """LoRA entries that can change: per target with any selected feature, the
        whole unmasked factor plus rank x (selected features)."""
        total = 0
        for name, (target, _) in self._layers.items():
            selected = int(self._features[name].sum())
            if selected:
                free = target.in_features if target.axis == "out" else target.out_features
                total += self.rank * (free + selected)
        return total

    @torch.no_grad()
    def merged_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict of the unwrapped model with the LoRA update merged in (copies)."""
        merged = {
            key.replace(".base_layer.", "."): value.detach().clone()
            for key, value in self.model.get_base_model().state_dict().items()
            if ".lora_" not in key
        }
        for name, (_, layer) in self._layers.items():
            merged[f"{name}.weight"] += layer.get_delta_weight(ADAPTER)
        return merged


def apply_masked_lora(
    model: nn.Module,
    components: Iterable[str],
    rank: int = 8,
    alpha: int = 16,
    dropout: float = 0.0,
    dynamic: bool = False,
) -> MaskedLoRA:
    """Wrap `model` (modified in place) with LoRA on the targets of `components`.

    Without `dynamic` LoRA goes on the attention projections of the layers with a
    selected head and on the linears of the selected MLPs; with `dynamic` on every
    attention and MLP projection, masked to `components`, so that
    `set_components` can later select any component."""
    component_map = ComponentMap(model)
    selected = component_map.validate(components)
    features = component_map.feature_masks(selected)
    targets = [t for t in component_map.targets if dynamic or features[t.name].any()]
    if not targets:
        raise ValueError("no components selected: nothing to put LoRA on")
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=[t.name for t in targets],
        fan_in_fan_out=component_map.architecture.conv1d,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return MaskedLoRA(get_peft_model(model, config), component_map, selected, rank, dynamic)
