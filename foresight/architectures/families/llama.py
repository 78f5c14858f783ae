"""Llama-family decoders (Llama incl. grouped-query attention, Mistral, Qwen2)."""

from foresight.architectures.spec import Architecture

ARCHITECTURE = Architecture(
    family="llama",
    model_types=("llama", "mistral", "qwen2"),
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
