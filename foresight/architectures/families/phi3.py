"""Phi-3: the Llama block with a fused `qkv_proj`, whose output features are laid out
[q (H * d) | k (G * d) | v (G * d)] (grouped-query attention: key/value head g serves query heads
g * H/G ... (g + 1) * H/G - 1), and a fused `gate_up_proj` (all of it the MLP's)."""

import torch

from foresight.architectures.spec import Architecture, Dims


def _qkv_features(dims: Dims, head: int) -> torch.Tensor:
    d, q_width, kv_width = dims.head_dim, dims.n_heads * dims.head_dim, dims.n_kv_heads * dims.head_dim
    group = head // (dims.n_heads // dims.n_kv_heads)
    own = torch.arange(d)
    return torch.cat([own + head * d, own + q_width + group * d, own + q_width + kv_width + group * d])


ARCHITECTURE = Architecture(
    family="phi3",
    model_types=("phi3",),
    layers="model.layers",
    embed="model.embed_tokens",
    final_norm="model.norm",
    attn_out="self_attn.o_proj",
    mlp="mlp",
    attn_read="input_layernorm",
    mlp_read="post_attention_layernorm",
    projections={
        "self_attn.qkv_proj": "qkv",
        "self_attn.o_proj": "o",
        "mlp.gate_up_proj": "mlp",
        "mlp.down_proj": "mlp",
    },
    qkv_features=_qkv_features,
)
