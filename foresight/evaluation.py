"""Task accuracy: top-1 (the argmax next token after the prompt is an accepted
answer) and two-way (the right answer outscores the wrong one)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from foresight.encoding import encode_pairs, pad_right, prompt_ids
from foresight.next_token import next_token_logits
from foresight.tasks.base import AttributionPair, Example


@torch.no_grad()
def predict_next(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], batch_size: int = 128
) -> list[str]:
    """The argmax next token after each prompt, decoded."""
    device = next(model.parameters()).device
    predictions: list[str] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(prompts), batch_size):
            rows = [prompt_ids(tokenizer, p) for p in prompts[start : start + batch_size]]
            ids = pad_right(rows, tokenizer.pad_token_id).to(device)
            last = torch.tensor([len(r) - 1 for r in rows], device=device)
            logits = next_token_logits(model, ids, last)
            predictions += tokenizer.convert_ids_to_tokens(logits.argmax(-1).tolist())
    finally:
        model.train(was_training)
    return predictions


def accuracy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    batch_size: int = 128,
) -> float:
    """Top-1 accuracy: the share of `examples` whose argmax next token is an accepted answer."""
    predictions = predict_next(model, tokenizer, [ex.prompt for ex in examples], batch_size)
    return sum(ex.is_correct(p) for ex, p in zip(examples, predictions, strict=True)) / len(examples)


@torch.no_grad()
def choice_accuracy(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[AttributionPair]
) -> float:
    """Two-way accuracy on clean prompts: the share of pairs whose right answer
    has a higher logit than the wrong one (chance: 0.5)."""
    batch = encode_pairs(tokenizer, pairs).to(next(model.parameters()).device)
    was_training = model.training
    model.eval()
    try:
        logits = next_token_logits(model, batch.clean, batch.last)
    finally:
        model.train(was_training)
    rows = torch.arange(len(batch))
    return (logits[rows, batch.answer] > logits[rows, batch.wrong]).float().mean().item()
