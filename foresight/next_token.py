"""Next-token logits at one position per row. The LM head sees only those positions, so a
forward computes [B, V] logits instead of [B, T, V]: with GPT-2's vocabulary about a third of an
evaluation's time (experiments/bench_last_logits.py). Done with a hook on the head, the same on
every transformers release (unlike `logits_to_keep`, whose per-row form only recent releases take)."""

from __future__ import annotations

import torch
from torch import nn


def next_token_logits(model: nn.Module, ids: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """[B, V]: the logits that row b of `ids` [B, T] predicts after its position `last[b]`. For
    the forward, a pre-hook makes the LM head read only row b's position `last[b]` of its input
    [B, T, d]; it is removed on return."""

    def keep_last(module: nn.Module, args: tuple) -> tuple:
        hidden = args[0]
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return (hidden[rows, last.to(hidden.device)][:, None], *args[1:])

    handle = model.get_output_embeddings().register_forward_pre_hook(keep_last)
    try:
        return model(input_ids=ids, use_cache=False).logits[:, 0]
    finally:
        handle.remove()
