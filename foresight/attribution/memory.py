"""The memory one attribution pass takes, estimated before a model is loaded."""

from __future__ import annotations

from collections.abc import Sequence

from transformers import AutoConfig, PreTrainedTokenizerBase

from foresight.encoding import prompt_ids
from foresight.models import resolve_model_path
from foresight.tasks import Task


def prompt_tokens(tokenizer: PreTrainedTokenizerBase, tasks: Sequence[Task], n: int = 64) -> int:
    """The longest attribution prompt, in tokens, among `n` pairs of each task."""
    return max(len(prompt_ids(tokenizer, p.clean)) for task in tasks for p in task.attribution_pairs(n))


def attribution_bytes(model: str, n_pairs: int, tokens: int) -> int:
    """An upper estimate of the memory that one attribution pass over `n_pairs` pairs of
    `tokens` tokens takes (all pairs at once, as the tracker runs them): per pair and token,
    the clean and corrupted activations of every node with their gradients, the forward's
    intermediates (attention weights, MLP hidden states) kept for the backward, and the logits.
    Measured on the default model (edge-level eap with the runs kept, peak RSS growth): 385 MiB
    for 256 ioi pairs and 1.31 GiB for 1024, where this says 0.78 and 3.1 GiB; the margin
    covers the rest of a checkpoint (gradients, faithfulness, the background model copy)."""
    c = AutoConfig.from_pretrained(resolve_model_path(model), local_files_only=True)
    d, layers, heads = c.hidden_size, c.num_hidden_layers, c.num_attention_heads
    inner = getattr(c, "intermediate_size", None) or getattr(c, "n_inner", None) or 4 * d
    nodes = layers * (heads + 1) + 2
    per_token = 2 * (3 * nodes * d + layers * (3 * heads * tokens + 3 * inner + 8 * d) + 3 * c.vocab_size)
    return 4 * n_pairs * tokens * per_token
