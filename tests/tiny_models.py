"""Tiny randomly initialised models of every supported family, built from their transformers
config classes (shared by the tests; no weights are ever downloaded)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
)


def _llama(vocab: int, width: int, layers: int, heads: int, kv_heads: int, **extra: Any) -> PretrainedConfig:
    return LlamaConfig(
        vocab_size=vocab, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=64, **extra,
    )  # fmt: skip


def _gpt2(vocab: int, width: int, layers: int, heads: int, kv_heads: int, **extra: Any) -> PretrainedConfig:
    return GPT2Config(
        vocab_size=vocab, n_embd=width, n_layer=layers, n_head=heads, n_positions=64, bos_token_id=0,
        eos_token_id=0, **extra,
    )  # fmt: skip


def _neox(vocab: int, width: int, layers: int, heads: int, kv_heads: int, **extra: Any) -> PretrainedConfig:
    return GPTNeoXConfig(
        vocab_size=vocab, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers,
        num_attention_heads=heads, max_position_embeddings=64, **extra,
    )  # fmt: skip


CONFIGS: dict[str, Callable[..., PretrainedConfig]] = {"llama": _llama, "gpt2": _gpt2, "gpt_neox": _neox}
MODELS: dict[str, type[PreTrainedModel]] = {
    "llama": LlamaForCausalLM,
    "gpt2": GPT2LMHeadModel,
    "gpt_neox": GPTNeoXForCausalLM,
}


def tiny_config(
    family: str,
    vocab: int = 40,
    width: int = 32,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    **extra: Any,
) -> PretrainedConfig:
    """The config of a tiny `family` model (`kv_heads` where the family has grouped-query
    attention; `extra` goes to the config class, e.g. use_parallel_residual)."""
    return CONFIGS[family](vocab, width, layers, heads, kv_heads, attn_implementation="eager", **extra)


def tiny_model(
    family: str, seed: int = 0, scale: float = 1.0, dtype: torch.dtype = torch.float32, **config: Any
):
    """A tiny random `family` model in eval mode; `scale` multiplies every matrix (larger
    weights make attribution effects larger than the default init does)."""
    torch.manual_seed(seed)
    model = MODELS[family](tiny_config(family, **config))
    if scale != 1.0:
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() == 2:
                    p.mul_(scale)
    return model.to(dtype).eval()
