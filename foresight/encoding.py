"""Token batches for attribution pairs and SFT examples.

Prompts are right-padded: with a causal model, padding after the last real
token cannot influence it, so no attention mask is needed and every metric
reads the logits at `last` (the index of each prompt's final token).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from transformers import PreTrainedTokenizerBase

if TYPE_CHECKING:
    from foresight.tasks.base import AttributionPair


class EncodingError(ValueError):
    """A prompt or answer that cannot be encoded as the task requires."""


@dataclass
class PairBatch:
    """Encoded attribution pairs.

    clean, corrupted: [B, T] token ids (right-padded); last: [B] index of each
    prompt's final token; answer, wrong: [B] token ids of the right and wrong
    answers.
    """

    clean: torch.Tensor
    corrupted: torch.Tensor
    last: torch.Tensor
    answer: torch.Tensor
    wrong: torch.Tensor

    def __len__(self) -> int:
        return self.clean.shape[0]

    def to(self, device: torch.device | str) -> PairBatch:
        """The batch on `device`."""
        return PairBatch(*(t.to(device) for t in self.__dict__.values()))

    def slice(self, start: int, stop: int) -> PairBatch:
        """The pairs `start:stop` of the batch."""
        return PairBatch(*(t[start:stop] for t in self.__dict__.values()))


def prompt_ids(tokenizer: PreTrainedTokenizerBase, prompt: str) -> list[int]:
    """Token ids of a prompt, special tokens (BOS) included."""
    return tokenizer(prompt)["input_ids"]


def answer_id(tokenizer: PreTrainedTokenizerBase, answer: str) -> int:
    """The single token id of an answer; raises if it is not one known token."""
    ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
        raise EncodingError(f"answer {answer!r} is not a single known token (got {len(ids)} tokens)")
    return ids[0]


def pad_right(rows: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    """[B, max_len] tensor of the rows, right-padded with `pad_id`."""
    width = max(len(r) for r in rows)
    return torch.tensor([list(r) + [pad_id] * (width - len(r)) for r in rows], dtype=torch.long)


def encode_pairs(tokenizer: PreTrainedTokenizerBase, pairs: Sequence[AttributionPair]) -> PairBatch:
    """Encode pairs; a corrupted prompt must have the clean prompt's token length."""
    clean = [prompt_ids(tokenizer, p.clean) for p in pairs]
    corrupted = [prompt_ids(tokenizer, p.corrupted) for p in pairs]
    for i, (c, k) in enumerate(zip(clean, corrupted, strict=True)):
        if len(c) != len(k):
            raise EncodingError(f"pair {i}: corrupted prompt has {len(k)} tokens, clean prompt has {len(c)}")
    pad = tokenizer.pad_token_id
    return PairBatch(
        clean=pad_right(clean, pad),
        corrupted=pad_right(corrupted, pad),
        last=torch.tensor([len(c) - 1 for c in clean]),
        answer=torch.tensor([answer_id(tokenizer, p.answer) for p in pairs]),
        wrong=torch.tensor([answer_id(tokenizer, p.wrong) for p in pairs]),
    )
