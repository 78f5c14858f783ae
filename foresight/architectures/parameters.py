"""Map circuit components onto the weights that implement them.

Definitions (d = head_dim, H = query heads, G = key/value heads, W = H * d):

- A *target* is one projection matrix of an attention block or an MLP (the
  `projections` of the model's `Architecture`). Its *features* run along one
  axis: the output features of q/k/v and of every MLP linear, the input
  features of the attention output projection.
- Head `a{L}.h{H}` owns, in layer L, the output features of its q, k and v
  and the input features (columns) `[h*d, (h+1)*d)` of the output projection;
  for a fused qkv projection, the features the architecture's `qkv_features` names.
- Grouped-query attention: key/value head g serves query heads
  `g*H/G ... (g+1)*H/G - 1` (transformers' `repeat_kv`); its k/v rows are
  trainable if *any* of its query heads is selected.
- MLP `m{L}` owns every feature of every linear of its MLP.
- A weight entry is trainable iff its feature is selected. A bias follows its
  rows: bias entry i is trainable iff weight row (output feature) i holds a
  trainable entry, so the output projection's bias is trainable as soon as one
  head of its layer is selected.
- `embed` and `logits` own no attention or MLP weights and are rejected.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from foresight import components as names
from foresight.architectures import architecture_of, base_model
from foresight.architectures.spec import Dims, Role


@dataclass(frozen=True)
class Target:
    """One projection: `name` is its module name in the model; `conv1d` means the
    weight is stored [in, out] (GPT-2), otherwise [out, in] (nn.Linear)."""

    name: str
    layer: int
    role: Role
    conv1d: bool
    out_features: int
    in_features: int
    has_bias: bool

    @property
    def axis(self) -> Literal["out", "in"]:
        """The axis that carries the features: "in" for the attention output projection."""
        return "in" if self.role == "o" else "out"

    @property
    def weight_shape(self) -> torch.Size:
        """The weight's shape as stored ([in, out] for Conv1D, else [out, in])."""
        return torch.Size(
            (self.in_features, self.out_features) if self.conv1d else (self.out_features, self.in_features)
        )

    @property
    def n_features(self) -> int:
        """How many features the target has along its feature axis."""
        return self.in_features if self.axis == "in" else self.out_features


@dataclass(frozen=True)
class AxisMask:
    """The entries of a parameter whose index along `dim` is in `keep` (bool [shape[dim]])."""

    dim: int
    keep: torch.Tensor

    def broadcast(self, ndim: int) -> torch.Tensor:
        """`keep` shaped to broadcast against a parameter with `ndim` dimensions."""
        shape = [1] * ndim
        shape[self.dim] = -1
        return self.keep.view(shape)

    def dense(self, shape: torch.Size) -> torch.Tensor:
        """The bool mask of the parameter's `shape` (True = trainable)."""
        return self.broadcast(len(shape)).expand(shape).clone()


def parameter_axis_masks(target: Target, features: torch.Tensor) -> dict[str, AxisMask]:
    """Masks of the target's `weight` (and `bias`) from its feature mask (bool [n_features])."""
    on_out = target.axis == "out"
    weight_dim = int(on_out) if target.conv1d else int(not on_out)
    masks = {"weight": AxisMask(weight_dim, features)}
    if target.has_bias:
        rows = features if on_out else features.any().expand(target.out_features)
        masks["bias"] = AxisMask(0, rows)
    return masks


def _in_out(module: nn.Module) -> tuple[int, int]:
    """(in_features, out_features) of a Linear or Conv1D (or of the base layer a LoRA layer wraps)."""
    module = module.get_base_layer() if hasattr(module, "get_base_layer") else module
    if isinstance(module, Conv1D):
        return module.weight.shape[0], module.weight.shape[1]
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    raise ValueError(f"{type(module).__name__}: expected nn.Linear or Conv1D")


class ComponentMap:
    """The targets of every head and MLP of a model, found from its architecture.

    Target names are module names in the Hugging Face model (the base model of a
    PEFT wrapper)."""

    def __init__(self, model: nn.Module) -> None:
        base = base_model(model)
        self.architecture = architecture_of(base)
        self.family = self.architecture.family
        self.dims = Dims.of(base.config)
        layers = base.get_submodule(self.architecture.layers)
        targets = []
        for layer_index, layer in enumerate(layers):
            for path, role in self.architecture.projections.items():
                module = layer.get_submodule(path)
                in_features, out_features = _in_out(module)
                inner = module.get_base_layer() if hasattr(module, "get_base_layer") else module
                targets.append(
                    Target(
                        name=f"{self.architecture.layers}.{layer_index}.{path}",
                        layer=layer_index,
                        role=role,
                        conv1d=isinstance(inner, Conv1D),
                        out_features=out_features,
                        in_features=in_features,
                        has_bias=getattr(inner, "bias", None) is not None,
                    )
                )
        self.targets: tuple[Target, ...] = tuple(targets)
        self.n_layers, self.n_heads = self.dims.n_layers, self.dims.n_heads
        self.head_dim, self.n_kv_heads = self.dims.head_dim, self.dims.n_kv_heads
        self.components: tuple[str, ...] = tuple(
            names.head(layer, h) for layer in range(self.n_layers) for h in range(self.n_heads)
        ) + tuple(names.mlp(layer) for layer in range(self.n_layers))

    def validate(self, components: Iterable[str]) -> frozenset[str]:
        """The components as a set; ValueError naming any that this model does not have."""
        selected = frozenset(components)
        unknown = sorted(selected - set(self.components))
        if unknown:
            raise ValueError(
                f"unknown components {unknown} for this {self.family} model with {self.n_layers} layers and "
                f"{self.n_heads} heads: expected a{{L}}.h{{H}} (L < {self.n_layers}, H < {self.n_heads}) or "
                "m{L}; embed and logits own no updatable attention or MLP weights"
            )
        return selected

    def targets_of(self, component: str) -> list[Target]:
        """The targets a (valid) head or MLP component owns features of."""
        layer, _ = names.position(component, self.n_layers)
        is_mlp = names.kind(component) == "mlp"
        return [t for t in self.targets if t.layer == layer and (t.role == "mlp") == is_mlp]

    def head_features(self, target: Target, head: int) -> torch.Tensor:
        """Feature indices (long [n]) of query head `head` on an attention target."""
        d = self.head_dim
        if target.role in ("q", "o"):
            return torch.arange(d) + head * d
        if target.role in ("k", "v"):
            group = head // (self.n_heads // self.n_kv_heads)
            return torch.arange(d) + group * d
        fused = self.architecture.qkv_features
        if fused is None:
            raise ValueError(f"{self.family}: a fused qkv projection needs the architecture's qkv_features")
        return fused(self.dims, head)

    def _features(self, target: Target, selected: frozenset[str]) -> torch.Tensor:
        """The bool mask [n_features] of the target's features that the `selected` components own."""
        mask = torch.zeros(target.n_features, dtype=torch.bool)
        if target.role == "mlp":
            mask[:] = names.mlp(target.layer) in selected
        else:
            for head in range(self.n_heads):
                if names.head(target.layer, head) in selected:
                    mask[self.head_features(target, head)] = True
        return mask

    def feature_masks(self, components: Iterable[str]) -> dict[str, torch.Tensor]:
        """For every target, the bool mask [n_features] of the features the components own."""
        selected = self.validate(components)
        return {target.name: self._features(target, selected) for target in self.targets}

    def owned_axis_masks(self, component: str) -> dict[str, AxisMask]:
        """The parameters one head or MLP owns entries of (its layer's attention or MLP
        targets), keyed `{module}.weight` / `.bias`, each with the axis mask of those entries."""
        selected = self.validate([component])
        return {
            f"{target.name}.{kind}": axis_mask
            for target in self.targets_of(component)
            for kind, axis_mask in parameter_axis_masks(target, self._features(target, selected)).items()
        }

    def parameter_masks(self, components: Iterable[str]) -> dict[str, torch.Tensor]:
        """Bool masks of the parameters' shapes (True = trainable), keyed `{module}.weight` / `.bias`."""
        features = self.feature_masks(components)
        masks = {}
        for target in self.targets:
            for kind, axis_mask in parameter_axis_masks(target, features[target.name]).items():
                shape = target.weight_shape if kind == "weight" else torch.Size([target.out_features])
                masks[f"{target.name}.{kind}"] = axis_mask.dense(shape)
        return masks
