"""Template tasks: each draws one instance (an example and its corrupted pair)
from a random generator; the split of a prompt is fixed by its hash, so the
SFT and evaluation splits are disjoint for every seed."""

from __future__ import annotations

import hashlib
import random
from abc import abstractmethod

from foresight.tasks.base import AttributionPair, Example, Task

EVAL_SHARE = 5  # one prompt in EVAL_SHARE belongs to the evaluation split
MAX_DRAWS_PER_ITEM = 200


def split_of(prompt: str) -> str:
    """`"eval"` for one prompt in EVAL_SHARE (by SHA-1 of the prompt), else `"train"`."""
    digest = int(hashlib.sha1(prompt.encode()).hexdigest()[:8], 16)
    return "eval" if digest % EVAL_SHARE == 0 else "train"


class GeneratedTask(Task):
    """A task defined by `draw`, which samples one instance."""

    @abstractmethod
    def draw(self, rng: random.Random) -> tuple[Example, AttributionPair]:
        """One random instance: the clean example and its corrupted pair."""

    def _collect(self, n: int, seed: int, split: str) -> list[tuple[Example, AttributionPair]]:
        rng = random.Random(f"{self.name}:{split}:{seed}")
        items: list[tuple[Example, AttributionPair]] = []
        for _ in range(n * MAX_DRAWS_PER_ITEM):
            if len(items) == n:
                return items
            example, pair = self.draw(rng)
            if split_of(example.prompt) == split:
                items.append((example, pair))
        raise RuntimeError(f"task {self.name}: could not draw {n} {split} items")

    def sft_examples(self, n: int, seed: int = 0) -> list[Example]:
        """`n` training examples drawn with `seed`."""
        return [ex for ex, _ in self._collect(n, seed, "train")]

    def eval_examples(self, n: int, seed: int = 0) -> list[Example]:
        """`n` held-out examples drawn with `seed`."""
        return [ex for ex, _ in self._collect(n, seed, "eval")]

    def attribution_pairs(self, n: int, seed: int = 0) -> list[AttributionPair]:
        """`n` clean/corrupted pairs drawn with `seed`."""
        return [pair for _, pair in self._collect(n, seed + 1_000_003, "eval")]
