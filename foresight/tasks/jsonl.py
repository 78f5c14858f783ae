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

from foresight.encoding import EncodingError, answer_id
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
    split = record["split"] if "split" in record else split_of(record["clean"])
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
        """Check every line against the tokenizer of `model`: no word the tokenizer does not know
        and single-token answers (first, for the whole file: only its distinct words and answers
        are tokenized), then equal token lengths and prompt plus answer within `max_tokens` (the
        model's context, if given; every distinct prompt tokenized in one batch). Errors name
        file:line, the task and `model`; a 100k-line file takes seconds."""
        unknown_id = tokenizer.unk_token_id
        prompts = sorted({p for line in self.lines for p in (line.pair.clean, line.pair.corrupted)})
        words = sorted({w for prompt in prompts for w in prompt.split()}) if unknown_id is not None else []
        unknown = {w for w, ids in zip(words, _encode(tokenizer, words), strict=True) if unknown_id in ids}
        answers = sorted(
            {a for line in self.lines for a in (line.pair.answer, line.pair.wrong, *line.example.accepted)}
        )
        single = {
            a
            for a, ids in zip(answers, _encode(tokenizer, answers, False), strict=True)
            if len(ids) == 1 and ids[0] != unknown_id
        }
        for line in self.lines:
            where = f"{self.path}:{line.number}: task {self.name!r}, model {model!r}"
            for prompt in (line.pair.clean, line.pair.corrupted):
                bad = [w for w in prompt.split() if w in unknown]
                if bad:
                    raise TaskFileError(f"{where}: the tokenizer does not know {bad[0]!r} in {prompt!r}")
            for answer in (line.pair.answer, line.pair.wrong, *line.example.accepted):
                if answer not in single:
                    try:
                        answer_id(tokenizer, answer)  # raises, with the reason
                    except EncodingError as err:
                        raise TaskFileError(f"{where}: {err}") from None
        lengths = dict(zip(prompts, map(len, _encode(tokenizer, prompts)), strict=True))
        for line in self.lines:
            clean, corrupted = lengths[line.pair.clean], lengths[line.pair.corrupted]
            if clean != corrupted:
                raise TaskFileError(
                    f"{self.path}:{line.number}: corrupted prompt has {corrupted} tokens, "
                    f"clean prompt has {clean}"
                )
            if max_tokens is not None and clean + 1 > max_tokens:
                raise TaskFileError(
                    f"{self.path}:{line.number}: task {self.name!r}, model {model!r}: prompt and answer "
                    f"take {clean + 1} tokens, the model's context is {max_tokens}"
                )

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


def _encode(tokenizer: PreTrainedTokenizerBase, texts: list[str], special: bool = True) -> list[list[int]]:
    """Token ids of each text, as `foresight.encoding.prompt_ids` (with `special`) or
    `answer_id` (without) give them, in one batch (through the Rust tokenizer of a fast
    tokenizer directly: transformers' batch call costs several times more)."""
    if not texts:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None) if tokenizer.is_fast else None
    if backend is not None:
        return [e.ids for e in backend.encode_batch(texts, add_special_tokens=special)]
    return tokenizer(texts, add_special_tokens=special)["input_ids"]
