"""A user's own SFT data: load, validate and tokenize it for training.

Formats (one per file, told by the fields of its rows):

- JSONL `{"prompt": ..., "completion": ...}`: the model reads prompt + completion (concatenated
  as they are: a word-level tokenizer needs the completion to start with a space) + EOS; the
  loss is on the completion (and EOS) only, unless `completion_only` is off.
- JSONL `{"messages": [{"role": ..., "content": ...}, ...]}`: rendered with the tokenizer's
  chat template; the loss is on the assistant turns. A template with `{% generation %}`
  markers marks them itself; for any other template, an assistant turn is the tokens that
  rendering the conversation up to and including it adds to rendering it up to the turn
  with the generation prompt.
- JSONL `{"text": ...}`: plain language-model loss on text + EOS.
- A directory written by `datasets.Dataset.save_to_disk` with the columns of one of those.

The tokenization is TRL's (`SFTTrainer`: prompt-completion masks, EOS appended, chat
templates with generation markers and `assistant_only_loss`), so a file trains the same
tokens with `foresight track --train-data` and with TRL. Every row is checked before any
is tokenized; a bad row raises `SFTDataError` naming `file:line` (a directory: `dir[row]`).
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import mlflow
from mlflow.entities import DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT
from transformers import PreTrainedTokenizerBase

from foresight.mlflow_log import SafeLogger

FORMATS: dict[str, tuple[str, ...]] = {
    "prompt-completion": ("prompt", "completion"),
    "messages": ("messages",),
    "text": ("text",),
}
ROLES = ("system", "user", "assistant")
IGNORE = -100  # the label of a token without loss (transformers' convention)
_GENERATION = re.compile(r"\{%-?\s*generation\s*-?%\}")


class SFTDataError(ValueError):
    """Training data that cannot be used, with the file (and line) at fault."""


@dataclass(frozen=True)
class SFTData:
    """Tokenized training data: `dataset` has the columns input_ids and labels (IGNORE where a
    token carries no loss), one row per input row, in file order."""

    dataset: datasets.Dataset
    path: Path
    format: str
    digest: str  # SHA-256 of the file (of a directory: of its files' names and bytes), 16 hex digits
    rows: int
    tokens: int
    loss_tokens: int

    @property
    def longest(self) -> int:
        """Tokens in the longest row."""
        return max(len(ids) for ids in self.dataset["input_ids"])

    def describe(self) -> dict[str, Any]:
        """What a manifest and an MLflow run record of the data."""
        return {
            "path": str(self.path), "format": self.format, "digest": self.digest, "rows": self.rows,
            "tokens": self.tokens, "loss_tokens": self.loss_tokens,
        }  # fmt: skip


def file_digest(path: Path) -> str:
    """SHA-256 (first 16 hex digits) of a file, or of a directory's relative file names and bytes."""
    sha = hashlib.sha256()
    files = [path] if path.is_file() else sorted(f for f in path.rglob("*") if f.is_file())
    for file in files:
        if file != path:
            sha.update(str(file.relative_to(path)).encode() + b"\0")
        sha.update(file.read_bytes())
    return sha.hexdigest()[:16]


def _format_of(row: Mapping[str, Any], where: str) -> str:
    """The format whose fields `row` has exactly."""
    keys = set(row)
    for name, fields in FORMATS.items():
        if keys == set(fields):
            return name
    known = {f for fields in FORMATS.values() for f in fields}
    if keys - known:
        unknown = sorted(keys - known)[0]
        raise SFTDataError(
            f"{where}: unknown field {unknown!r} (rows hold prompt and completion, messages or text)"
        )
    for fields in FORMATS.values():
        if keys & set(fields):
            missing = sorted(set(fields) - keys)
            raise SFTDataError(
                f"{where}: missing field {missing[0]!r}"
                if missing
                else f"{where}: fields {sorted(keys)} of two formats"
            )
    raise SFTDataError(f"{where}: no fields (rows hold prompt and completion, messages or text)")


def _check_text(value: object, field: str, where: str, empty_ok: bool = False) -> None:
    if not isinstance(value, str):
        raise SFTDataError(f"{where}: {field} is {type(value).__name__}, not a string")
    if not empty_ok and not value.strip():
        raise SFTDataError(f"{where}: empty {field}")


def check_row(row: object, where: str) -> str:
    """SFTDataError unless `row` is a valid row of some format; returns the format."""
    if not isinstance(row, dict):
        raise SFTDataError(f"{where}: not a JSON object")
    fmt = _format_of(row, where)
    if fmt == "prompt-completion":
        _check_text(row["prompt"], "prompt", where, empty_ok=True)
        _check_text(row["completion"], "completion", where)
    elif fmt == "text":
        _check_text(row["text"], "text", where)
    else:
        messages = row["messages"]
        if not isinstance(messages, list) or not messages:
            raise SFTDataError(f"{where}: messages must be a non-empty list of {{role, content}} objects")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or set(message) != {"role", "content"}:
                raise SFTDataError(f"{where}: message {i} must be an object with exactly role and content")
            if message["role"] not in ROLES:
                raise SFTDataError(
                    f"{where}: message {i}: role {message['role']!r} (choose from {', '.join(ROLES)})"
                )
            _check_text(message["content"], f"content of message {i}", where, message["role"] != "assistant")
        if not any(m["role"] == "assistant" for m in messages):
            raise SFTDataError(f"{where}: no assistant message (the loss is on assistant turns)")
    return fmt


def read_rows(path: str | Path) -> tuple[datasets.Dataset, list[str], str]:
    """The rows of a JSONL file or `save_to_disk` directory, checked: the dataset, each row's
    location (`file:line` or `dir[row]`) and the format."""
    path = Path(path)
    if path.is_dir():
        try:
            table = datasets.load_from_disk(str(path), keep_in_memory=True)
        except (FileNotFoundError, ValueError) as e:
            raise SFTDataError(f"{path}: not a datasets directory written by save_to_disk ({e})") from None
        if not isinstance(table, datasets.Dataset):
            raise SFTDataError(
                f"{path}: holds a DatasetDict (splits {list(table)}): give one split's directory"
            )
        rows, where = table.to_list(), [f"{path}[{i}]" for i in range(len(table))]
    elif path.is_file():
        rows, where = [], []
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise SFTDataError(f"{path}: not UTF-8 text ({e})") from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise SFTDataError(f"{path}:{number}: not valid JSON ({e.msg})") from None
            where.append(f"{path}:{number}")
        table = None
    else:
        raise SFTDataError(f"{path}: no such file or directory")
    if not rows:
        raise SFTDataError(f"{path}: no rows")
    formats = [check_row(row, w) for row, w in zip(rows, where, strict=True)]
    for fmt, w in zip(formats, where, strict=True):
        if fmt != formats[0]:
            raise SFTDataError(f"{w}: a {fmt} row among {formats[0]} rows (one format per file)")
    return table if table is not None else datasets.Dataset.from_list(rows), where, formats[0]


def has_generation_markers(template: str) -> bool:
    """Whether a chat template marks assistant tokens with `{% generation %}` blocks."""
    return _GENERATION.search(template) is not None


def _render(tokenizer: PreTrainedTokenizerBase, messages: list[dict], **kwargs: Any) -> dict[str, list[int]]:
    return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kwargs)


def _chat_labels(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict], where: str
) -> tuple[list[int], list[int]]:
    """Input ids of a rendered conversation and labels on its assistant turns (module docstring)."""
    if has_generation_markers(tokenizer.chat_template):
        out = _render(tokenizer, messages, return_assistant_tokens_mask=True)
        ids = list(out["input_ids"])
        return ids, [t if m else IGNORE for t, m in zip(ids, out["assistant_masks"], strict=True)]
    ids = list(_render(tokenizer, messages)["input_ids"])
    labels = [IGNORE] * len(ids)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = _render(tokenizer, messages[:i], add_generation_prompt=True)["input_ids"] if i else []
        end = _render(tokenizer, messages[: i + 1])["input_ids"]
        if list(end[: len(start)]) != list(start) or list(ids[: len(end)]) != list(end):
            raise SFTDataError(
                f"{where}: the chat template does not render message {i} after the ones before it, so its "
                "tokens cannot be told apart; add {% generation %} markers to the template"
            )
        labels[len(start) : len(end)] = ids[len(start) : len(end)]
    return ids, labels


def tokenize_row(
    row: Mapping[str, Any], fmt: str, tokenizer: PreTrainedTokenizerBase, completion_only: bool, where: str
) -> tuple[list[int], list[int]]:
    """Input ids and labels of one checked row of format `fmt` (module docstring)."""
    eos = tokenizer.eos_token or ""
    if fmt == "messages":
        return _chat_labels(tokenizer, row["messages"], where)
    if fmt == "text":
        text = row["text"] if row["text"].endswith(eos) else row["text"] + eos
        ids = list(tokenizer(text)["input_ids"])
        return ids, list(ids)
    completion = row["completion"] if row["completion"].endswith(eos) else row["completion"] + eos
    prompt = list(tokenizer(row["prompt"])["input_ids"])
    ids = list(tokenizer(row["prompt"] + completion)["input_ids"])
    start = next(
        (i for i, (a, b) in enumerate(zip(prompt, ids, strict=False)) if a != b), min(len(prompt), len(ids))
    )
    return ids, [IGNORE] * start + ids[start:] if completion_only else list(ids)


def load_sft_data(
    path: str | Path,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int | None = None,
    completion_only: bool = True,
    context: int | None = None,
) -> SFTData:
    """Read, check and tokenize training data (module docstring), truncating every row to its
    first `max_length` tokens. SFTDataError for a bad row, for messages when the tokenizer has
    no chat template, for a row left without loss tokens by the truncation, and for a row
    longer than the model's `context` (tokens) that `max_length` does not cut."""
    path = Path(path)
    table, where, fmt = read_rows(path)
    if fmt == "messages" and not getattr(tokenizer, "chat_template", None):
        raise SFTDataError(
            f"{path}: rows hold messages, but the tokenizer has no chat template (set "
            "tokenizer.chat_template and save it with the model, or give prompt/completion or text rows)"
        )

    def encode(row: dict[str, Any], index: int) -> dict[str, list[int]]:
        ids, labels = tokenize_row(row, fmt, tokenizer, completion_only, where[index])
        if max_length is not None:
            ids, labels = ids[:max_length], labels[:max_length]
        if all(label == IGNORE for label in labels):
            cut = f" within --max-length {max_length}" if max_length is not None else ""
            raise SFTDataError(f"{where[index]}: no token to train on{cut}")
        if context is not None and len(ids) > context:
            raise SFTDataError(
                f"{where[index]}: {len(ids)} tokens, longer than the model's context of {context} "
                "(pass --max-length to cut rows)"
            )
        return {"input_ids": ids, "labels": labels}

    quiet = not datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # a bar on stderr would break the one-line error of a bad row
    try:
        tokenized = table.map(
            encode, with_indices=True, remove_columns=table.column_names, keep_in_memory=True
        )
    finally:
        if not quiet:
            datasets.enable_progress_bars()
    lengths = [len(ids) for ids in tokenized["input_ids"]]
    loss = sum(sum(label != IGNORE for label in labels) for labels in tokenized["labels"])
    return SFTData(tokenized, path, fmt, file_digest(path), len(tokenized), sum(lengths), loss)


def log_training_data(data: SFTData, logger: SafeLogger) -> None:
    """Log `data` as the training input of `logger`'s run (MLflow's dataset API: name, the
    file's digest, its source path, a profile with the row count, the tokenized columns' schema)."""
    with warnings.catch_warnings():  # a local path resolves to two equal source classes: MLflow warns
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_huggingface(
            data.dataset, source=str(data.path.resolve()), name=data.path.name, digest=data.digest
        )
    tags = [InputTag(MLFLOW_DATASET_CONTEXT, "training")]
    logger.log_inputs([DatasetInput(dataset._to_mlflow_entity(), tags)])
