"""Fuzzing the JSONL task loader: arbitrary bytes, text lines and JSON values either load
or raise the loader's own TaskFileError naming the file; valid records of arbitrary text
load back exactly."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import PreTrainedTokenizerBase

from foresight.tasks import JsonlTask, TaskFileError

FUZZ = settings(max_examples=200, deadline=None)
FIELDS = ("clean", "corrupted", "answer", "wrong", "split", "accepted")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
# objects that look like records: schema keys (and others) with arbitrary values
record_like = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), json_values, max_size=7)
# values that pass the field checks often: short words, the splits, lists of words
plausible = st.sampled_from(["a", "b", "7", "8", "3 + 4 =", " ", "", "train", "eval", "test"]) | st.lists(
    st.sampled_from(["7", "", "x"]), max_size=2
)
near_valid = st.fixed_dictionaries(
    {k: plausible for k in FIELDS[:4]}, optional={"split": plausible, "accepted": plausible | json_values}
)
nonblank = st.text(min_size=1, max_size=30).filter(lambda s: s.strip())


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def load(folder: Path, content: bytes) -> JsonlTask | None:
    """JsonlTask of a file holding `content`, or None after a TaskFileError naming the file.
    Any other exception fails the test."""
    path = folder / "fuzz.jsonl"
    path.write_bytes(content)
    try:
        return JsonlTask(path)
    except TaskFileError as err:
        assert str(err).startswith(f"{path}:"), str(err)
        return None


def lines(*texts: str) -> bytes:
    return "\n".join(texts).encode("utf-8", "surrogatepass")


@FUZZ
@given(content=st.binary(max_size=400))
def test_arbitrary_bytes(folder: Path, content: bytes) -> None:
    load(folder, content)


@FUZZ
@given(texts=st.lists(st.text(max_size=60), max_size=6))
def test_arbitrary_text_lines(folder: Path, texts: list[str]) -> None:
    load(folder, lines(*texts))


@FUZZ
@given(values=st.lists(json_values | record_like, min_size=1, max_size=5))
def test_arbitrary_json_values(folder: Path, values: list[object]) -> None:
    load(folder, lines(*(json.dumps(v) for v in values)))


@FUZZ
@given(records=st.lists(near_valid, min_size=1, max_size=5))
def test_near_valid_records_load_or_fail_cleanly_also_against_the_tokenizer(
    folder: Path, tokenizer: PreTrainedTokenizerBase, records: list[dict]
) -> None:
    task = load(folder, lines(*(json.dumps(r) for r in records)))
    if task is not None:
        try:
            task.validate(tokenizer)
        except TaskFileError as err:
            assert str(err).startswith(f"{task.path}:"), str(err)


@FUZZ
@given(
    records=st.lists(
        st.tuples(nonblank, nonblank, nonblank, nonblank).filter(lambda r: r[2] != r[3] and r[0] != r[1]),
        min_size=2,
        max_size=5,
    ),
    ascii_only=st.booleans(),
)
def test_valid_records_of_arbitrary_text_load_back_exactly(
    folder: Path, records: list[tuple[str, str, str, str]], ascii_only: bool
) -> None:
    """Any string may sit in a field, raw (U+2028, form feed, ...) or escaped: only a newline
    ends a line of JSONL."""
    splits = ["train", "eval"] + ["train"] * (len(records) - 2)
    rows = [
        {"clean": c, "corrupted": k, "answer": a, "wrong": w, "split": s}
        for (c, k, a, w), s in zip(records, splits, strict=True)
    ]
    task = load(folder, lines(*(json.dumps(r, ensure_ascii=ascii_only) for r in rows)))
    assert task is not None
    assert [
        (line.pair.clean, line.pair.corrupted, line.pair.answer, line.pair.wrong) for line in task.lines
    ] == [(r["clean"], r["corrupted"], r["answer"], r["wrong"]) for r in rows]
    assert [line.number for line in task.lines] == list(range(1, len(rows) + 1))


@pytest.mark.parametrize(
    "content",
    [
        b"[" * 100_000 + b"]" * 100_000,  # nesting deeper than the recursion limit
        b"1" * 5_000,  # an integer longer than int() accepts
        b'{"clean": "\xff"}',  # not UTF-8
        b'{"clean": "\\ud800", "corrupted": "b", "answer": "c", "wrong": "d"}',  # a lone surrogate
    ],
    ids=["deep-nesting", "huge-integer", "invalid-utf8", "lone-surrogate"],
)
def test_pathological_lines(folder: Path, content: bytes) -> None:
    assert load(folder, content) is None
