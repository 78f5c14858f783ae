"""Tiny randomly initialised models of every supported family, built from their transformers
config classes (shared by the tests; no weights are ever downloaded)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Olmo2Config,
    Olmo2ForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from foresight.encoding import PairBatch


def _llama(vocab: int, width: int, layers: int, heads: int, kv_heads: int, **extra: Any) -> PretrainedConfig:
    return LlamaConfig(
        vocab_size=vocab, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=64, **extra,
    )  # fmt: skip


def _decoder(config_class: type[PretrainedConfig], **defaults: Any) -> Callable[..., PretrainedConfig]:
    """A Llama-style config builder (grouped-query attention, head_dim = width / heads, token ids
    0 so that they lie in the tiny vocabulary) with family `defaults`."""

    def build(
        vocab: int, width: int, layers: int, heads: int, kv_heads: int, **extra: Any
    ) -> PretrainedConfig:
        return config_class(
            vocab_size=vocab, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers,
            num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=width // heads,
            max_position_embeddings=64, pad_token_id=0, bos_token_id=0, eos_token_id=0,
            **{**defaults, **extra},
        )  # fmt: skip

    return build


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


CONFIGS: dict[str, Callable[..., PretrainedConfig]] = {
    "llama": _llama,
    "mistral": _decoder(MistralConfig),
    "qwen2": _decoder(Qwen2Config),  # q/k/v biases
    "qwen3": _decoder(Qwen3Config),  # per-head q/k norms
    # soft-capping on: the logits go through cap * tanh(x / cap)
    "gemma2": _decoder(Gemma2Config, final_logit_softcapping=5.0, query_pre_attn_scalar=8),
    "gemma3": _decoder(Gemma3TextConfig, final_logit_softcapping=5.0, query_pre_attn_scalar=8),
    "phi3": _decoder(Phi3Config),  # fused qkv_proj and gate_up_proj
    "olmo2": _decoder(Olmo2Config),  # post-norms, q/k norms over the whole projection
    "gpt2": _gpt2,
    "gpt_neox": _neox,
}
MODELS: dict[str, type[PreTrainedModel]] = {
    "llama": LlamaForCausalLM,
    "mistral": MistralForCausalLM,
    "qwen2": Qwen2ForCausalLM,
    "qwen3": Qwen3ForCausalLM,
    "gemma2": Gemma2ForCausalLM,
    "gemma3": Gemma3ForCausalLM,
    "phi3": Phi3ForCausalLM,
    "olmo2": Olmo2ForCausalLM,
    "gpt2": GPT2LMHeadModel,
    "gpt_neox": GPTNeoXForCausalLM,
}
FAMILIES: tuple[str, ...] = tuple(MODELS)


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


def assert_only_components_moved(
    original: PreTrainedModel, tuned: PreTrainedModel, components: list[str]
) -> None:
    """Every weight entry outside `components` (their `ComponentMap` masks) is bit-identical in
    `tuned` and `original`, and some entry inside them moved."""
    from foresight.architectures.parameters import ComponentMap

    before, after = dict(original.state_dict()), dict(tuned.state_dict())
    owned = ComponentMap(original).parameter_masks(components)
    moved = False
    for key, value in before.items():
        inside = owned.get(key, torch.zeros_like(value, dtype=torch.bool))
        assert torch.equal(after[key][~inside], value[~inside]), key
        moved |= bool((after[key][inside] != value[inside]).any())
    assert moved, "no selected weight moved"


def random_pairs(vocab: int, n: int, length: int, seed: int) -> PairBatch:
    """n random pairs of `length` tokens (ids 3..vocab-1) whose corrupted prompt differs at
    position 2, with random answer and wrong tokens."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(3, vocab, (n, length), generator=g)
    corrupted = clean.clone()
    corrupted[:, 2] = torch.randint(3, vocab, (n,), generator=g)
    answer, wrong = torch.randint(3, vocab, (n,), generator=g), torch.randint(3, vocab, (n,), generator=g)
    return PairBatch(clean, corrupted, torch.full((n,), length - 1), answer, wrong)
