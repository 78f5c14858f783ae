"""Gemma 2 and Gemma 3 (text-only `Gemma3ForCausalLM`, model_type `gemma3_text`): four norms per
layer and logit soft-capping.

    x = x + post_attention_layernorm(o_proj(attention(input_layernorm(x))))
    x = x + post_feedforward_layernorm(mlp(pre_feedforward_layernorm(x)))
    logits = cap * tanh(lm_head(norm(x)) / cap)        (cap = final_logit_softcapping)

So attention reads the residual through `input_layernorm` and the MLP through
`pre_feedforward_layernorm`; `post_attention_layernorm` normalises the attention output before it
is added (the heads' write is nonlinear, see `spec.Architecture.attn_write_norm`) and the MLP's
write is the output of `post_feedforward_layernorm`. The embedding scales by sqrt(hidden) inside
`embed_tokens`; soft-capping (and Gemma 3's q/k norms, shared by all heads and owned by none, as in
Qwen3) act inside modules whose inputs and outputs are hooked, so they need nothing else.
"""

from foresight.architectures.spec import Architecture

ARCHITECTURE = Architecture(
    family="gemma",
    model_types=("gemma2", "gemma3_text"),
    layers="model.layers",
    embed="model.embed_tokens",
    final_norm="model.norm",
    attn_out="self_attn.o_proj",
    mlp="mlp",
    attn_read="input_layernorm",
    mlp_read="pre_feedforward_layernorm",
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
