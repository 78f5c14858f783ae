"""The task interface: SFT examples, a held-out split, and attribution pairs.

Every answer is a single token of the model's vocabulary (a word for the
default word-level tokenizer), so accuracy is "the argmax next token after the
prompt is an accepted answer" and the attribution metric is the logit
difference between the right and the wrong answer token at the last position.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from foresight.registry import Registry


@dataclass(frozen=True)
class Example:
    """A prompt and its answer token. `accepted` lists every answer counted as
    correct (defaults to just `answer`)."""

    prompt: str
    answer: str
    accepted: tuple[str, ...] = field(default=())

    def is_correct(self, predicted: str) -> bool:
        """Whether `prediction` is an accepted answer."""
        return predicted in (self.accepted or (self.answer,))


@dataclass(frozen=True)
class AttributionPair:
    """A clean and a corrupted prompt of the same token length, with the
    answer that is right on the clean prompt and the one that is wrong."""

    clean: str
    corrupted: str
    answer: str
    wrong: str


class Task(ABC):
    """A task generates its data deterministically from a seed.

    `sft_examples` and `eval_examples` never share a prompt; attribution pairs
    are drawn from the evaluation distribution.
    """

    name: str
    description: str = ""

    @property
    def family(self) -> str:
        """The family of near-copies the task belongs to (held out as a whole): its own name
        unless a subclass names another."""
        return self.name

    @abstractmethod
    def sft_examples(self, n: int, seed: int = 0) -> list[Example]:
        """`n` training examples."""

    @abstractmethod
    def eval_examples(self, n: int, seed: int = 0) -> list[Example]:
        """`n` held-out examples, disjoint from every `sft_examples` prompt."""

    @abstractmethod
    def attribution_pairs(self, n: int, seed: int = 0) -> list[AttributionPair]:
        """`n` clean/corrupted pairs for the logit-difference metric."""


TASKS: Registry[type[Task]] = Registry("task")  # the built-in tasks, then their family variants
