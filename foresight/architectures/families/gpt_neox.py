"""GPT-NeoX / Pythia: a fused query_key_value whose output is viewed as
[head][q, k, v][d] (features `h * 3d + j * d + i`), and optionally a parallel
residual (`use_parallel_residual`: attention and MLP of a layer read the same
residual)."""

from typing import Any

import torch

from foresight.architectures.spec import Architecture, Dims


def _qkv_features(dims: Dims, head: int) -> torch.Tensor:
    return torch.arange(3 * dims.head_dim) + head * 3 * dims.head_dim


def _parallel(config: Any) -> bool:
    return bool(getattr(config, "use_parallel_residual", False))


ARCHITECTURE = Architecture(
    family="gpt_neox",
    model_types=("gpt_neox",),
    layers="gpt_neox.layers",
    embed="gpt_neox.emb_dropout",
    final_norm="gpt_neox.final_layer_norm",
    attn_out="attention.dense",
    mlp="mlp",
    attn_read="input_layernorm",
    mlp_read="post_attention_layernorm",
    projections={
        "attention.query_key_value": "qkv",
        "attention.dense": "o",
        "mlp.dense_h_to_4h": "mlp",
        "mlp.dense_4h_to_h": "mlp",
    },
    qkv_features=_qkv_features,
    parallel_residual=_parallel,
)
