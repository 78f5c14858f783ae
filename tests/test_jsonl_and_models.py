"""Your own data and models: JSONL tasks, the tokenizer round trip, loading from disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from foresight.encoding import encode_pairs
from foresight.factory.tokenizer import build_tokenizer
from foresight.models import ModelLoadError, load_model
from foresight.tasks import TaskFileError, get_task

GOOD = [
    {"clean": "3 + 4 =", "corrupted": "3 + 5 =", "answer": "7", "wrong": "8", "split": "train"},
    {"clean": "2 + 2 =", "corrupted": "2 + 6 =", "answer": "4", "wrong": "8", "split": "eval"},
]


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_jsonl_task_works_like_a_builtin(tmp_path: Path, tokenizer) -> None:
    task = get_task(str(_write(tmp_path, [json.dumps(r) for r in GOOD])))
    task.validate(tokenizer)
    assert {ex.prompt for ex in task.sft_examples(5)} == {"3 + 4 ="}
    assert {ex.prompt for ex in task.eval_examples(5)} == {"2 + 2 ="}
    batch = encode_pairs(tokenizer, task.attribution_pairs(3))
    assert (
        batch.clean.shape == batch.corrupted.shape
        and batch.answer.tolist() == [tokenizer.convert_tokens_to_ids("4")] * 3
    )


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"clean": "a", "corrupted": "b", "answer": "c"}), "missing field 'wrong'"),
        (
            json.dumps({"clean": "a", "corrupted": "b", "answer": "c", "wrong": 3}),
            "'wrong' must be a non-empty",
        ),
        (json.dumps({"clean": "a", "corrupted": "b", "answer": "c", "wrong": "c"}), "are the same"),
        (json.dumps({**GOOD[0], "split": "test"}), "'split' must be 'train' or 'eval'"),
    ],
)
def test_malformed_jsonl_names_file_line_and_problem(tmp_path: Path, line: str, problem: str) -> None:
    path = _write(tmp_path, [json.dumps(GOOD[0]), line, json.dumps(GOOD[1])])
    with pytest.raises(TaskFileError, match=rf"^{path}:2: .*{problem}"):
        get_task(str(path))


def test_unequal_token_lengths_are_rejected_with_the_reason(tmp_path: Path, tokenizer) -> None:
    bad = {**GOOD[1], "corrupted": "2 + 2 + 6 ="}
    task = get_task(str(_write(tmp_path, [json.dumps(GOOD[0]), json.dumps(bad)])))
    with pytest.raises(
        TaskFileError, match=r"mine.jsonl:2: corrupted prompt has 7 tokens, clean prompt has 5"
    ):
        task.validate(tokenizer)


def test_multi_token_answer_is_rejected(tmp_path: Path, tokenizer) -> None:
    bad = {**GOOD[1], "answer": "zebra"}
    task = get_task(str(_write(tmp_path, [json.dumps(GOOD[0]), json.dumps(bad)])))
    message = r"mine.jsonl:2: task 'mine', model 'the model': answer 'zebra' is not a single known token"
    with pytest.raises(TaskFileError, match=message):
        task.validate(tokenizer)


def test_tokenizer_round_trip(tmp_path: Path) -> None:
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    text = "when mary and john went to the store , john gave a drink to"
    ids = loaded(text)["input_ids"]
    assert ids == tokenizer(text)["input_ids"] and ids[0] == loaded.bos_token_id
    assert len(ids) == len(text.split()) + 1
    assert loaded.decode(ids, skip_special_tokens=True) == text


def test_loads_a_model_directory_from_disk(tiny_model_dir: Path) -> None:
    model, tokenizer = load_model(tiny_model_dir)
    assert model.config.num_hidden_layers == 2 and model.config._attn_implementation == "eager"
    assert tokenizer.pad_token_id == 0


def test_model_errors_are_clear(tmp_path: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such directory"):
        load_model(tmp_path / "missing")
    (tmp_path / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    with pytest.raises(ModelLoadError, match="no weights"):
        load_model(tmp_path)
