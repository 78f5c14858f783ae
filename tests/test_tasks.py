"""The built-in task suite: shapes, determinism, disjoint splits, and answers
re-derived from the prompt text by independent solvers."""

from __future__ import annotations

import random
import re

import pytest

from foresight.tasks import corpus_task_names, get_task, task_names
from foresight.tasks import vocab as V
from foresight.tasks.base import AttributionPair, Example

N = 150


def _solve_bool(prompt: str) -> str:
    """Evaluate 'l0 op l1 op l2 is' left to right with Python's own operators."""
    words = prompt.split()[:-1]
    literals, ops, negate = [], [], False
    for word in words:
        if word == "not":
            negate = True
        elif word in ("true", "false"):
            literals.append((word == "true") != negate)
            negate = False
        else:
            ops.append(word)
    value = literals[0]
    for op, literal in zip(ops, literals[1:], strict=True):
        value = eval(f"{value} {op} {literal}")  # noqa: S307 - Python's and/or as the reference
    return "true" if value else "false"


def _solve(task: str, prompt: str) -> set[str]:
    """Every correct answer of a prompt, derived from its text alone."""
    w = prompt.split()
    if task == "ioi":
        names = [x for x in w if x in V.NAMES]
        return {n for n in names if names.count(n) == 1 and n in w[:4]}
    if task == "greater_than":
        start = int(re.search(r"from the year (\d+)", prompt).group(1))
        return {str(y) for y in range(start + 1, 100)}
    if task == "induction":
        first = w.index(w[-1])
        return {w[first + 1]} if first < len(w) - 1 else set()
    if task == "reverse":
        eq = w.index("=")
        seq, shown = w[1:eq], w[eq + 1 :]
        return {seq[::-1][len(shown)]}
    if task == "bool":
        return {_solve_bool(prompt)}
    if task == "arithmetic":
        return {str(int(w[0]) + int(w[2]))}
    if task == "gender":
        name = w[-3]
        return {"he" if name in V.MALE_NAMES else "she"}
    if task == "sentiment":
        return {"positive" if w[-4] in V.POSITIVE else "negative"}
    if task == "docstring":
        args = [x for x in w[w.index("(") + 1 : w.index(")")] if x != ","]
        documented = w.count("param") - 1
        return {args[documented]}
    raise AssertionError(task)


@pytest.mark.parametrize("name", task_names())
def test_answers_match_an_independent_solver(name: str) -> None:
    task = get_task(name)
    for example in task.sft_examples(N) + task.eval_examples(N):
        assert example.is_correct(example.answer)
        assert {example.answer} <= _solve(name, example.prompt), example
    for pair in task.attribution_pairs(N):
        right = _solve(name, pair.clean)
        assert pair.answer in right and pair.wrong not in right, pair
        corrupted = _solve(name, pair.corrupted)  # must no longer favour answer over wrong
        assert not (pair.answer in corrupted and pair.wrong not in corrupted), pair


@pytest.mark.parametrize("name", corpus_task_names())
def test_pairs_have_equal_token_lengths_and_distinct_answers(name: str, tokenizer) -> None:
    for pair in get_task(name).attribution_pairs(N):
        clean, corrupted = tokenizer(pair.clean)["input_ids"], tokenizer(pair.corrupted)["input_ids"]
        assert len(clean) == len(corrupted)
        assert pair.clean != pair.corrupted and pair.answer != pair.wrong
        assert tokenizer.unk_token_id not in clean + corrupted
        for answer in (pair.answer, pair.wrong):
            assert len(tokenizer(answer, add_special_tokens=False)["input_ids"]) == 1


@pytest.mark.parametrize("name", corpus_task_names())
def test_same_seed_same_data_other_seed_other_data(name: str) -> None:
    a, b = get_task(name), get_task(name)
    assert a.sft_examples(50, seed=3) == b.sft_examples(50, seed=3)
    assert a.attribution_pairs(50, seed=3) == b.attribution_pairs(50, seed=3)
    assert a.sft_examples(50, seed=3) != b.sft_examples(50, seed=4)


@pytest.mark.parametrize("name", corpus_task_names())
def test_train_and_eval_splits_are_disjoint(name: str) -> None:
    task = get_task(name)
    train = {ex.prompt for seed in range(3) for ex in task.sft_examples(300, seed)}
    held_out = {ex.prompt for ex in task.eval_examples(300)} | {p.clean for p in task.attribution_pairs(300)}
    assert train and held_out and not train & held_out


@pytest.mark.parametrize("name", corpus_task_names()[len(task_names()) :])
def test_a_variant_poses_its_family_question(name: str) -> None:
    """A template variant gives the built-in's answers for the same draws in other words; a word-pool
    variant (same template) is answered by the built-in's solver."""
    variant, base = get_task(name), get_task(get_task(name).family)
    assert base.name in task_names() and base.family == base.name != name
    same_pool = getattr(variant, "pool", None) == getattr(base, "pool", None)
    for seed in range(N):
        (example, pair), (expected, expected_pair) = (
            variant.draw(random.Random(seed)),
            base.draw(random.Random(seed)),
        )
        if same_pool:
            assert example.prompt != expected.prompt
            assert (example.answer, example.accepted) == (expected.answer, expected.accepted)
            assert (pair.answer, pair.wrong) == (expected_pair.answer, expected_pair.wrong)
        else:
            assert {example.answer} <= _solve(base.name, example.prompt)


def test_registry_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown task 'nope'.*ioi"):
        get_task("nope")


def test_suite_has_the_nine_seed_study_tasks() -> None:
    expected = {"ioi", "greater_than", "induction", "reverse", "bool", "arithmetic", "gender", "sentiment"}
    assert expected | {"docstring"} <= set(task_names())
    assert all(isinstance(e, Example) for e in get_task("ioi").sft_examples(2))
    assert all(isinstance(p, AttributionPair) for p in get_task("ioi").attribution_pairs(2))
