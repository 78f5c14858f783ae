"""Qwen3: the Llama layout plus per-head q/k RMSNorms (`self_attn.q_norm`, `k_norm`) applied to
each head's query and key before the rotary embedding.

Heads' activations are still the input of `o_proj` (the norms act before attention). The q/k
norm weights [head_dim] are shared by every head, so they belong to no single head: like the
block norms they are no component's parameters (frozen in masked full SFT, never LoRA targets).
"""

from dataclasses import replace

from foresight.architectures.families.llama import ARCHITECTURE as LLAMA

ARCHITECTURE = replace(LLAMA, family="qwen3", model_types=("qwen3",))
