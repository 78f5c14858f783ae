"""OLMo 2: norms after the blocks, none before them.

    x = x + post_attention_layernorm(o_proj(attention(x)))
    x = x + post_feedforward_layernorm(mlp(x))

The attention and MLP blocks read the residual as it is, so the blocks themselves are the
receivers' read modules. A head writes through `post_attention_layernorm` (nonlinear in its
activation, see `spec.Architecture.attn_write_norm`); the MLP's write is the output of
`post_feedforward_layernorm`. `q_norm` / `k_norm` normalise the whole q [H * d] and k [G * d]
projections: a head's q/k rows are still its own (masks, LoRA), but through the shared RMS they
also move the other heads' queries and keys; the norm weights belong to no single head and, like the
block norms, to no component.
"""

from foresight.architectures.spec import Architecture

ARCHITECTURE = Architecture(
    family="olmo2",
    model_types=("olmo2",),
    layers="model.layers",
    embed="model.embed_tokens",
    final_norm="model.norm",
    attn_out="self_attn.o_proj",
    mlp="mlp",
    attn_read="self_attn",
    mlp_read="mlp",
    mlp_write="post_feedforward_layernorm",
    attn_write_norm="post_attention_layernorm",
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
