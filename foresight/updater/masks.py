"""Map circuit components onto the weights that implement them.

Definitions (d = head_dim, H = query heads, G = key/value heads, W = H * d):

- A *target* is one projection matrix of an attention block or an MLP.
  Its *features* run along one axis: the output features of q/k/v and of
  every MLP linear, the input features of the attention output projection.
- Head `a{L}.h{H}` owns, in layer L, the output features of its q, k and v
  and the input features (columns) `[h*d, (h+1)*d)` of the output projection.
  Layouts of the fused q/k/v projections:
  GPT-2 `attn.c_attn` (Conv1D, weight [in, 3W]): features `j*W + h*d + i`, j = q, k, v;
  GPT-NeoX `attention.query_key_value` (Linear, weight [3W, in]): features
  `h*3d + j*d + i` (the output is viewed as [head][q, k, v][d]).
- Grouped-query attention (Llama family): key/value head g serves query
  heads `g*H/G ... (g+1)*H/G - 1` (transformers' `repeat_kv`); its k/v rows are
  trainable if *any* of its query heads is selected.
- MLP `m{L}` owns every feature of every linear of its MLP.
- A weight entry is trainable iff its feature is selected. A bias follows its
  rows: bias entry i is trainable iff weight row (output feature) i holds a
  trainable entry, so the output projection's bias is trainable as soon as one
  head of its layer is selected.
- `embed` and `logits` own no attention or MLP weights and are rejected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

Role = Literal["q", "k", "v", "qkv", "o", "mlp"]

# family -> (model_types, layer-list name, {module path inside a layer: role})
FAMILIES: dict[str, tuple[tuple[str, ...], str, dict[str, Role]]] = {
    "llama": (
        ("llama", "mistral", "qwen2"),
        "layers",
        {
            "self_attn.q_proj": "q",
            "self_attn.k_proj": "k",
            "self_attn.v_proj": "v",
            "self_attn.o_proj": "o",
            "mlp.gate_proj": "mlp",
            "mlp.up_proj": "mlp",
            "mlp.down_proj": "mlp",
        },
    ),
    "gpt2": (
        ("gpt2",),
        "h",
        {"attn.c_attn": "qkv", "attn.c_proj": "o", "mlp.c_fc": "mlp", "mlp.c_proj": "mlp"},
    ),
    "gpt_neox": (
        ("gpt_neox",),
        "layers",
        {
            "attention.query_key_value": "qkv",
            "attention.dense": "o",
            "mlp.dense_h_to_4h": "mlp",
            "mlp.dense_4h_to_h": "mlp",
        },
    ),
}
SUPPORTED_MODEL_TYPES = tuple(t for types, _, _ in FAMILIES.values() for t in types)


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
        return torch.Size(
            (self.in_features, self.out_features) if self.conv1d else (self.out_features, self.in_features)
        )

    @property
    def n_features(self) -> int:
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
    if isinstance(module, Conv1D):
        return module.weight.shape[0], module.weight.shape[1]
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    raise ValueError(f"{type(module).__name__}: expected nn.Linear or Conv1D")


def model_family(model: nn.Module) -> str:
    """The adapter family of a Hugging Face causal LM ("llama", "gpt2", "gpt_neox")."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    for family, (types, _, _) in FAMILIES.items():
        if model_type in types:
            return family
    supported = ", ".join(SUPPORTED_MODEL_TYPES)
    raise ValueError(f"unsupported architecture {model_type!r}: supported model types are {supported}")


class ComponentMap:
    """The targets of every head and MLP of a model, found by walking its modules."""

    def __init__(self, model: nn.Module) -> None:
        self.family = model_family(model)
        _, layers_name, roles = FAMILIES[self.family]
        pattern = re.compile(rf"(?:.*\.)?{layers_name}\.(\d+)\.({'|'.join(map(re.escape, roles))})")
        targets = []
        for name, module in model.named_modules():
            match = pattern.fullmatch(name)
            if match:
                in_features, out_features = _in_out(module)
                targets.append(
                    Target(
                        name=name,
                        layer=int(match.group(1)),
                        role=roles[match.group(2)],
                        conv1d=isinstance(module, Conv1D),
                        out_features=out_features,
                        in_features=in_features,
                        has_bias=getattr(module, "bias", None) is not None,
                    )
                )
        if not targets:
            raise ValueError(f"{self.family} model: no attention or MLP projections found")
        self.targets: tuple[Target, ...] = tuple(targets)
        config = model.config
        self.n_layers = 1 + max(t.layer for t in targets)
        self.n_heads: int = config.num_attention_heads
        out_proj = next(t for t in targets if t.role == "o")
        self.head_dim = out_proj.in_features // self.n_heads
        k_proj = next((t for t in targets if t.role == "k"), None)
        self.n_kv_heads = k_proj.out_features // self.head_dim if k_proj else self.n_heads
        self.components: tuple[str, ...] = tuple(
            f"a{layer}.h{head}" for layer in range(self.n_layers) for head in range(self.n_heads)
        ) + tuple(f"m{layer}" for layer in range(self.n_layers))

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
        layer = int(component[1:].split(".")[0])
        is_mlp = component.startswith("m")
        return [t for t in self.targets if t.layer == layer and (t.role == "mlp") == is_mlp]

    def head_features(self, target: Target, head: int) -> torch.Tensor:
        """Feature indices (long [n]) of query head `head` on an attention target."""
        d, width = self.head_dim, self.n_heads * self.head_dim
        own = torch.arange(d) + head * d
        if target.role in ("q", "o"):
            return own
        if target.role in ("k", "v"):
            group = head // (self.n_heads // self.n_kv_heads)
            return torch.arange(d) + group * d
        if self.family == "gpt2":
            return torch.cat([own + j * width for j in range(3)])
        return torch.arange(3 * d) + head * 3 * d

    def feature_masks(self, components: Iterable[str]) -> dict[str, torch.Tensor]:
        """For every target, the bool mask [n_features] of the features the components own."""
        selected = self.validate(components)
        masks = {}
        for target in self.targets:
            mask = torch.zeros(target.n_features, dtype=torch.bool)
            if target.role == "mlp":
                mask[:] = f"m{target.layer}" in selected
            else:
                for head in range(self.n_heads):
                    if f"a{target.layer}.h{head}" in selected:
                        mask[self.head_features(target, head)] = True
            masks[target.name] = mask
        return masks

    def parameter_masks(self, components: Iterable[str]) -> dict[str, torch.Tensor]:
        """Bool masks of the parameters' shapes (True = trainable), keyed `{module}.weight` / `.bias`."""
        features = self.feature_masks(components)
        masks = {}
        for target in self.targets:
            for kind, axis_mask in parameter_axis_masks(target, features[target.name]).items():
                shape = target.weight_shape if kind == "weight" else torch.Size([target.out_features])
                masks[f"{target.name}.{kind}"] = axis_mask.dense(shape)
        return masks
