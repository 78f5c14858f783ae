"""GPT-2: Conv1D projections (weights stored [in, out]) and a fused c_attn whose
output features are laid out `j * W + h * d + i` (j = q, k, v; W = H * d)."""

import torch

from foresight.architectures.spec import Architecture, Dims


def _qkv_features(dims: Dims, head: int) -> torch.Tensor:
    width, own = dims.n_heads * dims.head_dim, torch.arange(dims.head_dim) + head * dims.head_dim
    return torch.cat([own + j * width for j in range(3)])


ARCHITECTURE = Architecture(
    family="gpt2",
    model_types=("gpt2",),
    layers="transformer.h",
    embed="transformer.drop",  # wte + wpe, after dropout (the identity in eval mode)
    final_norm="transformer.ln_f",
    attn_out="attn.c_proj",
    mlp="mlp",
    attn_read="ln_1",
    mlp_read="ln_2",
    projections={"attn.c_attn": "qkv", "attn.c_proj": "o", "mlp.c_fc": "mlp", "mlp.c_proj": "mlp"},
    conv1d=True,
    qkv_features=_qkv_features,
)
