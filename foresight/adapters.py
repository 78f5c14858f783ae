"""Adapters: where the graph's nodes live on a Hugging Face model object.

An adapter names, on the model itself (the base model of a PEFT wrapper, with
PEFT's wrapper modules in place), the modules whose hooks define the graph:

- embed: the module whose output is the residual stream entering block 0
  (Llama `embed_tokens`; GPT-2 `drop`, i.e. wte + wpe; GPT-NeoX `emb_dropout`);
- attn_out[L]: the attention output projection; its input [B, T, H * dh] split
  by head is the heads' activations;
- mlps[L]: the MLP block; its output [B, T, d] is the MLP's activation;
- attn_norms[L], mlp_norms[L], final_norm: the norms whose input is the
  residual read by receiver a{L}, m{L} and logits.

The residual stream entering a norm is the sum of the upstream senders'
writes plus constants (output-projection and MLP biases are inside the
writes; the o-projection bias is a constant attributed to no node, since it is
the same on clean and corrupted inputs). Dropout is the identity because
attribution runs in eval mode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from foresight.graph import Graph


class UnsupportedArchitecture(ValueError):
    """A model whose architecture has no adapter."""


@dataclass(frozen=True)
class Adapter:
    family: str
    model: nn.Module
    n_heads: int
    head_dim: int
    parallel: bool
    embed: nn.Module
    attn_out: tuple[nn.Module, ...]
    mlps: tuple[nn.Module, ...]
    attn_norms: tuple[nn.Module, ...]
    mlp_norms: tuple[nn.Module, ...]
    final_norm: nn.Module

    @property
    def n_layers(self) -> int:
        return len(self.attn_out)

    @property
    def graph(self) -> Graph:
        return Graph(self.n_layers, self.n_heads, self.parallel)

    @torch.no_grad()
    def output_weights(self) -> list[torch.Tensor]:
        """Per layer, the linear map of the output projection as [H, dh, d]: head h
        writes z_h @ W[h] to the residual (plus the bias, a constant). Read off by
        applying the module (whatever wraps it, e.g. LoRA) to the identity, so call
        it in eval mode and before hooks are registered on the projection."""
        weights = []
        for module in self.attn_out:
            param = next(module.parameters())
            eye = torch.eye(self.n_heads * self.head_dim, dtype=param.dtype, device=param.device)
            w = module(eye) - module(torch.zeros_like(eye[:1]))
            weights.append(w.reshape(self.n_heads, self.head_dim, -1))
        return weights


def _llama(model: nn.Module) -> Adapter:
    config, inner = model.config, model.model
    layers = inner.layers
    n_heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_heads
    return Adapter(
        family="llama",
        model=model,
        n_heads=n_heads,
        head_dim=head_dim,
        parallel=False,
        embed=inner.embed_tokens,
        attn_out=tuple(layer.self_attn.o_proj for layer in layers),
        mlps=tuple(layer.mlp for layer in layers),
        attn_norms=tuple(layer.input_layernorm for layer in layers),
        mlp_norms=tuple(layer.post_attention_layernorm for layer in layers),
        final_norm=inner.norm,
    )


def _gpt2(model: nn.Module) -> Adapter:
    config, inner = model.config, model.transformer
    blocks = inner.h
    return Adapter(
        family="gpt2",
        model=model,
        n_heads=config.n_head,
        head_dim=config.n_embd // config.n_head,
        parallel=False,
        embed=inner.drop,
        attn_out=tuple(block.attn.c_proj for block in blocks),
        mlps=tuple(block.mlp for block in blocks),
        attn_norms=tuple(block.ln_1 for block in blocks),
        mlp_norms=tuple(block.ln_2 for block in blocks),
        final_norm=inner.ln_f,
    )


def _gpt_neox(model: nn.Module) -> Adapter:
    config, inner = model.config, model.gpt_neox
    layers = inner.layers
    return Adapter(
        family="gpt_neox",
        model=model,
        n_heads=config.num_attention_heads,
        head_dim=config.hidden_size // config.num_attention_heads,
        parallel=bool(config.use_parallel_residual),
        embed=inner.emb_dropout,
        attn_out=tuple(layer.attention.dense for layer in layers),
        mlps=tuple(layer.mlp for layer in layers),
        attn_norms=tuple(layer.input_layernorm for layer in layers),
        mlp_norms=tuple(layer.post_attention_layernorm for layer in layers),
        final_norm=inner.final_layer_norm,
    )


BUILDERS: dict[str, Callable[[nn.Module], Adapter]] = {
    "LlamaForCausalLM": _llama,
    "MistralForCausalLM": _llama,
    "Qwen2ForCausalLM": _llama,
    "GPT2LMHeadModel": _gpt2,
    "GPTNeoXForCausalLM": _gpt_neox,
}


def base_model(model: nn.Module) -> nn.Module:
    """The Hugging Face model inside a PEFT wrapper (the model itself otherwise)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def get_adapter(model: nn.Module) -> Adapter:
    """The adapter of a supported causal LM; raises `UnsupportedArchitecture`."""
    base = base_model(model)
    builder = BUILDERS.get(type(base).__name__)
    if builder is None:
        raise UnsupportedArchitecture(
            f"no attribution adapter for {type(base).__name__}; supported: {', '.join(BUILDERS)}"
        )
    return builder(base)
