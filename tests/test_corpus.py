"""The pretraining corpus teaches the skills without the tasks' prompt formats."""

from __future__ import annotations

import random

import pytest

from foresight.factory.corpus import corpus_document
from foresight.tasks import corpus_task_names, get_task
from foresight.tasks import vocab as V

CLASSES = {
    "NAME": V.NAMES,
    "PLACE": V.PLACES,
    "OBJECT": V.OBJECTS,
    "NUMBER": V.NUMBERS,
    "WORD": V.WORDS,
    "ADJECTIVE": V.POSITIVE + V.NEGATIVE,
    "REVIEWED": V.REVIEWED,
    "ARG": V.ARG_NAMES,
    "FUNCTION": V.FUNCTION_NAMES,
}
WORD_CLASS = {w: c for c, words in CLASSES.items() for w in words if w not in V.GLUE}


def shape(text: str) -> tuple[str, ...]:
    """The text's words with every fillable word (a name, number, list word, ...) replaced
    by its class: two texts of one template have the same shape."""
    return tuple(WORD_CLASS.get(w, w) for w in text.split())


def sentence_starts(document: str) -> list[tuple[str, ...]]:
    """The shape of the document from each sentence start on."""
    words = shape(document)
    return [words[i:] for i in range(len(words)) if i == 0 or words[i - 1] == "."]


def test_shape_maps_a_template_to_one_shape() -> None:
    assert shape("when john and mary went to the park") == shape("when anna and tom went to the store")
    assert shape("when john and mary went") != shape("john and mary went to")


@pytest.mark.parametrize("task", corpus_task_names())
def test_no_corpus_sentence_starts_like_a_task_prompt(task: str) -> None:
    """No sentence of 4000 corpus documents begins with the shape of one of 200 of the
    task's prompts (a prompt stands at the start of its text)."""
    prompts = {shape(e.prompt) for e in get_task(task).sft_examples(200, seed=0)}
    rng = random.Random(0)
    starts = [s for _ in range(4000) for s in sentence_starts(corpus_document(rng, sentences=3))]
    leaked = [p for p in prompts if any(s[: len(p)] == p for s in starts)]
    assert not leaked, " ".join(leaked[0])
