"""Qwen3: the Llama layout plus per-head q/k RMSNorms (`self_attn.q_norm`, `k_norm`) applied to
each head's query and key before the rotary embedding.

Heads' activations are still the input of `o_proj` (the norms act before attention). The q/k
norm weights [head_dim] are shared by every head, so they belong to no single head: like the
block norms they are no component's parameters (frozen in masked full SFT, never LoRA targets).
"""

from foresight.architectures.spec import Architecture

ARCHITECTURE = Architecture(
    family="qwen3",
    model_types=("qwen3",),
    layers="model.layers",
    embed="model.embed_tokens",
    final_norm="model.norm",
    attn_out="self_attn.o_proj",
    mlp="mlp",
    attn_read="input_layernorm",
    mlp_read="post_attention_layernorm",
    projections={
        "self_attn.q_proj": "q",
        "self_attn.k_proj": "k",
        "self_attn.v_proj": "v",
        "self_attn.o_proj": "o",
        "mlp.gate_proj": "mlp",
        "mlp.up_proj": "mlp",
        "mlp.down_proj": "mlp",
    },
)
