"""What Foresight needs to know about one model family (`Architecture`), and the
dimensions of one model (`Dims`).

Module paths are dotted paths: `layers`, `embed` and `final_norm` from the
Hugging Face model (e.g. `LlamaForCausalLM`), the others from one decoder layer.

- embed: the module whose output is the residual stream entering block 0;
- attn_out: the attention output projection; its input [B, T, H * dh] split by
  head is the heads' activations;
- mlp: the MLP block;
- mlp_write: the module whose output [B, T, d] is what the MLP adds to the
  residual, the MLP's activation (None: the MLP block's own output; Gemma 2/3 and
  OLMo 2: `post_feedforward_layernorm`, the norm applied to the MLP's output);
- attn_write_norm: a norm applied to the attention output (after the output
  projection) before it is added to the residual (Gemma 2/3 and OLMo 2:
  `post_attention_layernorm`), None if the projection's output is added as it
  is. With it a head's residual write is no longer linear in its activation
  (see `foresight.attribution.eap` for what edge scores then mean);
- attn_read, mlp_read, final_norm: the modules whose input (first positional
  argument, or the `hidden_states` keyword) is the residual read by receivers
  a{L}, m{L} and logits: the pre-norms of a pre-norm block (for Gemma 2/3 the MLP
  reads through `pre_feedforward_layernorm`), the attention and MLP blocks
  themselves where the block has no pre-norm (OLMo 2);
- projections: every projection matrix of a layer with its role (q, k, v; qkv for
  a fused one; o for the output projection; mlp for any MLP linear);
- qkv_features: for a fused qkv projection, the output features of one query
  head (see `parameters.ComponentMap`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch

Role = Literal["q", "k", "v", "qkv", "o", "mlp"]


@dataclass(frozen=True)
class Dims:
    """n_layers, n_heads (query heads H), n_kv_heads (key/value heads G) and head_dim (d)."""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int

    @classmethod
    def of(cls, config: Any) -> Dims:
        """The dimensions in a transformers config (standard attribute names)."""
        n_heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_heads
        n_kv = getattr(config, "num_key_value_heads", None) or n_heads
        return cls(config.num_hidden_layers, n_heads, n_kv, head_dim)


def _never_parallel(config: Any) -> bool:
    return False


@dataclass(frozen=True)
class Architecture:
    """The hook modules, projection layout and graph rule of one model family."""

    family: str
    model_types: tuple[str, ...]
    layers: str
    embed: str
    final_norm: str
    attn_out: str
    mlp: str
    attn_read: str
    mlp_read: str
    projections: Mapping[str, Role]
    mlp_write: str | None = None
    attn_write_norm: str | None = None
    conv1d: bool = False
    qkv_features: Callable[[Dims, int], torch.Tensor] | None = None
    parallel_residual: Callable[[Any], bool] = _never_parallel
