"""`Adapter`: where the graph's nodes live on one Hugging Face model object.

Resolved from the model's `Architecture` on the model itself (the base model of
a PEFT wrapper, with PEFT's wrapper modules in place). The residual stream
entering a read module is the sum of the upstream senders' writes plus constants
(output-projection and MLP biases are inside the writes; the o-projection bias
is a constant attributed to no node, since it is the same on clean and
corrupted inputs). Dropout is the identity because attribution runs in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from foresight.architectures import architecture_of, base_model, graph_of
from foresight.architectures.spec import Dims
from foresight.graph import Graph


@dataclass(frozen=True)
class Adapter:
    """The hook modules of one model: embed, per layer attn_out / mlp_write / attn_read /
    mlp_read / attn_write_norm (None where the family has none), and final_norm (see
    `spec.Architecture` for what each one is)."""

    family: str
    model: nn.Module
    graph: Graph
    n_heads: int
    head_dim: int
    embed: nn.Module
    attn_out: tuple[nn.Module, ...]
    mlp_writes: tuple[nn.Module, ...]
    attn_reads: tuple[nn.Module, ...]
    mlp_reads: tuple[nn.Module, ...]
    attn_write_norms: tuple[nn.Module | None, ...]
    final_norm: nn.Module

    @property
    def n_layers(self) -> int:
        """The number of decoder layers."""
        return len(self.attn_out)

    @torch.no_grad()
    def output_weights(self) -> list[torch.Tensor]:
        """Per layer, the linear map of the output projection as [H, dh, d]: head h
        writes z_h @ W[h] to the residual (plus the bias, a constant). Read off by
        applying the module (whatever wraps it, e.g. LoRA) to the identity, so call
        it in eval mode and before hooks are registered on the projection."""
        weights = []
        for module in self.attn_out:
            param = next(module.parameters())
            eye = torch.eye(self.n_heads * self.head_dim, dtype=param.dtype, device=param.device)
            w = module(eye) - module(torch.zeros_like(eye[:1]))
            weights.append(w.reshape(self.n_heads, self.head_dim, -1))
        return weights


def get_adapter(model: nn.Module) -> Adapter:
    """The adapter of a supported causal LM; raises `UnsupportedArchitecture`."""
    base = base_model(model)
    arch = architecture_of(base)
    dims = Dims.of(base.config)
    layers = base.get_submodule(arch.layers)

    def each(path: str) -> tuple[nn.Module, ...]:
        return tuple(layer.get_submodule(path) for layer in layers)

    return Adapter(
        family=arch.family,
        model=base,
        graph=graph_of(base),
        n_heads=dims.n_heads,
        head_dim=dims.head_dim,
        embed=base.get_submodule(arch.embed),
        attn_out=each(arch.attn_out),
        mlp_writes=each(arch.mlp_write or arch.mlp),
        attn_reads=each(arch.attn_read),
        mlp_reads=each(arch.mlp_read),
        attn_write_norms=each(arch.attn_write_norm) if arch.attn_write_norm else (None,) * len(layers),
        final_norm=base.get_submodule(arch.final_norm),
    )
