"""Tasks given as a JSONL file of clean/corrupted pairs.

Schema, one JSON object per line:

    {"clean": str, "corrupted": str, "answer": str, "wrong": str,
     "split": "train" | "eval"        (optional; default: by hash of `clean`),
     "accepted": [str, ...]           (optional; answers counted as correct)}

Every line is an attribution pair, and its clean prompt with `answer` is an
example of its split. `answer`, `wrong` and `accepted` must be single tokens.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from foresight.encoding import EncodingError, answer_id, prompt_ids
from foresight.tasks.base import AttributionPair, Example, Task
from foresight.tasks.generated import split_of

REQUIRED = ("clean", "corrupted", "answer", "wrong")


class TaskFileError(ValueError):
    """A malformed task file; the message starts with `file:line:`."""


@dataclass(frozen=True)
class _Line:
    number: int
    example: Example
    pair: AttributionPair
    split: str


def _is_unicode(text: str) -> bool:
    """False for a string with a lone surrogate (JSON's "\\ud800" escape decodes to one)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _parse_line(path: Path, number: int, text: str) -> _Line:
    where = f"{path}:{number}"
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise TaskFileError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
    except (ValueError, RecursionError) as err:  # an integer too long for int(), nesting too deep
        raise TaskFileError(f"{where}: not valid JSON ({type(err).__name__}: {err})") from None
    if not isinstance(record, dict):
        raise TaskFileError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for key in REQUIRED:
        if key not in record:
            raise TaskFileError(f"{where}: missing field {key!r}")
        if not isinstance(record[key], str) or not record[key].strip():
            raise TaskFileError(f"{where}: field {key!r} must be a non-empty string")
        if not _is_unicode(record[key]):
            raise TaskFileError(f"{where}: field {key!r} holds a lone surrogate (not valid Unicode)")
    if record["answer"] == record["wrong"]:
        raise TaskFileError(f"{where}: 'answer' and 'wrong' are the same")
    if record["clean"] == record["corrupted"]:
        raise TaskFileError(f"{where}: 'clean' and 'corrupted' are the same prompt (nothing to attribute)")
    split = record.get("split", split_of(record["clean"]))
    if split not in ("train", "eval"):
        raise TaskFileError(f"{where}: field 'split' must be 'train' or 'eval', got {split!r}")
    accepted = record.get("accepted", [])
    if not isinstance(accepted, list) or not all(
        isinstance(a, str) and a and _is_unicode(a) for a in accepted
    ):
        raise TaskFileError(f"{where}: field 'accepted' must be a list of non-empty strings")
    example = Example(record["clean"], record["answer"], tuple(accepted))
    pair = AttributionPair(record["clean"], record["corrupted"], record["answer"], record["wrong"])
    return _Line(number, example, pair, split)


class JsonlTask(Task):
    """A task read from a JSONL file (see the module docstring for the schema)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = self.path.stem
        self.description = f"JSONL task from {self.path}"
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise TaskFileError(f"{self.path}: cannot read ({err})") from None
        # only "\n" ends a line: str.splitlines would also split at characters that JSON
        # strings may hold raw (U+2028, U+0085, form feed, ...)
        self.lines = [
            _parse_line(self.path, number, line)
            for number, line in enumerate(text.split("\n"), start=1)
            if line.strip()
        ]
        for split in ("train", "eval"):
            if not any(line.split == split for line in self.lines):
                raise TaskFileError(f"{self.path}: no {split} lines (need at least one of each split)")

    def validate(
        self, tokenizer: PreTrainedTokenizerBase, model: str = "the model", max_tokens: int | None = None
    ) -> None:
        """Check every line against the tokenizer of `model`: equal token lengths, no word the
        tokenizer does not know, single-token answers, and prompt plus answer within
        `max_tokens` (the model's context, if given). Errors name file:line, the task and `model`."""
        unknown = tokenizer.unk_token_id
        for line in self.lines:
            where = f"{self.path}:{line.number}: task {self.name!r}, model {model!r}"
            clean, corrupted = (
                prompt_ids(tokenizer, line.pair.clean),
                prompt_ids(tokenizer, line.pair.corrupted),
            )
            if len(clean) != len(corrupted):
                raise TaskFileError(
                    f"{self.path}:{line.number}: corrupted prompt has {len(corrupted)} tokens, "
                    f"clean prompt has {len(clean)}"
                )
            if unknown is not None:
                for prompt in (line.pair.clean, line.pair.corrupted):
                    words = [w for w in prompt.split() if unknown in prompt_ids(tokenizer, w)]
                    if words:
                        raise TaskFileError(
                            f"{where}: the tokenizer does not know {words[0]!r} in {prompt!r}"
                        )
            if max_tokens is not None and len(clean) + 1 > max_tokens:
                raise TaskFileError(
                    f"{where}: prompt and answer take {len(clean) + 1} tokens, "
                    f"the model's context is {max_tokens}"
                )
            for answer in (line.pair.answer, line.pair.wrong, *line.example.accepted):
                try:
                    answer_id(tokenizer, answer)
                except EncodingError as err:
                    raise TaskFileError(f"{where}: {err}") from None

    def _sample(self, split: str, n: int, seed: int) -> list[_Line]:
        pool = [line for line in self.lines if line.split == split]
        rng = random.Random(f"{self.name}:{split}:{seed}")
        return [rng.choice(pool) for _ in range(n)]

    def sft_examples(self, n: int, seed: int = 0) -> list[Example]:
        """`n` training examples of the file, drawn with `seed`."""
        return [line.example for line in self._sample("train", n, seed)]

    def eval_examples(self, n: int, seed: int = 0) -> list[Example]:
        """`n` held-out examples of the file, drawn with `seed`."""
        return [line.example for line in self._sample("eval", n, seed)]

    def attribution_pairs(self, n: int, seed: int = 0) -> list[AttributionPair]:
        """`n` pairs of the file, drawn with `seed`."""
        return [line.pair for line in self._sample("eval", n, seed + 1_000_003)]
