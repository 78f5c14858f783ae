"""The synthetic pretraining corpus.

It teaches the skills the tasks need (who gave what to whom, number order,
copying, reversing, boolean logic, sums, pronouns, sentiment words, function
arguments) in sentence templates that differ from every task's SFT format, so
the pretrained model starts above chance but far from perfect.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from foresight.tasks import vocab as V
from foresight.tasks.builtin import bool_value


def _giving(rng: random.Random) -> str:
    a, b = rng.sample(V.NAMES, 2)
    place, obj = rng.choice(V.PLACES), rng.choice(V.OBJECTS)
    return rng.choice(
        (
            f"{a} and {b} were at the {place} . {b} handed the {obj} to {a} .",
            f"{a} met {b} at the {place} . later {b} gave the {obj} to {a} .",
            f"at the {place} {a} saw {b} . {a} gave {b} the {obj} .",
            f"{a} and {b} went to the {place} . {b} gave a {obj} to {a} .",
        )
    )


def _numbers(rng: random.Random) -> str:
    start = rng.randint(0, 90)
    if rng.random() < 0.5:
        run = " ".join(str(i) for i in range(start, min(start + rng.randint(3, 6), 100)))
        return f"we count up : {run} ."
    later = rng.randint(start + 1, min(start + 9, 99))
    return rng.choice(
        (
            f"after {start} comes {later} . {later} is after {start} .",
            f"the year {start} came before the year {later} .",
            f"it went from {start} to {later} .",
        )
    )


def _copying(rng: random.Random) -> str:
    seq = " ".join(rng.sample(V.WORDS, rng.randint(3, 6)))
    return rng.choice(
        (
            f"copy : {seq} . again : {seq} .",
            f"list {seq} . say it again : {seq} .",
            f"we saw {seq} and then {seq} .",
            f"we say {seq} {seq} .",
        )
    )


def _backwards(rng: random.Random) -> str:
    seq = rng.sample(V.WORDS, rng.randint(2, 5))
    forward, backward = " ".join(seq), " ".join(reversed(seq))
    return rng.choice(
        (
            f"forward {forward} backward {backward} .",
            f"{forward} in reverse order is {backward} .",
            f"in reverse : {forward} is {backward} .",
            f"{forward} in reverse = {backward} .",
        )
    )


def _logic(rng: random.Random) -> str:
    literals = [(rng.random() < 0.3, rng.random() < 0.5) for _ in range(rng.randint(2, 3))]
    ops = [rng.choice(("and", "or")) for _ in literals[1:]]
    words = [("not " if neg else "") + ("true" if val else "false") for neg, val in literals]
    expression = words[0] + "".join(f" {op} {w}" for op, w in zip(ops, words[1:], strict=True))
    value = "true" if bool_value(literals, ops) else "false"
    return rng.choice((f"it gives {value} : {expression} .", f"{expression} = {value} ."))


def _sums(rng: random.Random) -> str:
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    return rng.choice(
        (
            f"{a} plus {b} equals {a + b} .",
            f"the sum of {a} and {b} is {a + b} .",
            f"we add {a} + {b} and get {a + b} .",
            f"{a} plus {b} = {a + b} .",
        )
    )


def _pronouns(rng: random.Random) -> str:
    male = rng.random() < 0.5
    name = rng.choice(V.MALE_NAMES if male else V.FEMALE_NAMES)
    noun, pronoun, possessive = ("man", "he", "his") if male else ("woman", "she", "her")
    obj = rng.choice(V.OBJECTS)
    return rng.choice(
        (
            f"{name} is a {noun} . {pronoun} likes {possessive} {obj} .",
            f"{name} said that {pronoun} likes the {obj} .",
        )
    )


def _feelings(rng: random.Random) -> str:
    positive = rng.random() < 0.5
    adjective = rng.choice(V.POSITIVE if positive else V.NEGATIVE)
    feeling, verdict = ("happy", "loved") if positive else ("sad", "hated")
    label = "positive" if positive else "negative"
    noun = rng.choice(V.REVIEWED)
    return rng.choice(
        (
            f"we saw the {noun} . it was {adjective} and i {verdict} it , i felt {feeling} .",
            f"this is a {label} review : the {noun} was {adjective} .",
            f"the {noun} was {adjective} , so the review was {label} .",
            f"the {noun} was {adjective} . the sentiment was {label} .",
        )
    )


def _functions(rng: random.Random) -> str:
    args = rng.sample(V.ARG_NAMES, rng.randint(2, 4))
    function, listed = rng.choice(V.FUNCTION_NAMES), " ".join(args)
    return rng.choice(
        (
            f"function {function} takes arguments {listed} and uses {listed} .",
            f"def {function} ( {' , '.join(args)} ) : uses {listed} .",
            f"{function} takes " + " , ".join(f"param {a}" for a in args) + " .",
        )
    )


SKILLS: dict[str, Callable[[random.Random], str]] = {
    "giving": _giving,
    "numbers": _numbers,
    "copying": _copying,
    "backwards": _backwards,
    "logic": _logic,
    "sums": _sums,
    "pronouns": _pronouns,
    "feelings": _feelings,
    "functions": _functions,
}


# Relative frequency of each skill: copying from context (what induction, reverse and
# docstring need) is learned last by a small model, so it is drawn more often.
WEIGHTS = {name: 1 for name in SKILLS} | {"copying": 3, "backwards": 2, "functions": 2}


def corpus_document(rng: random.Random, sentences: int = 2) -> str:
    """A short document: `sentences` skill sentences drawn with `WEIGHTS`."""
    names = rng.choices(list(SKILLS), weights=list(WEIGHTS.values()), k=sentences)
    return " ".join(SKILLS[name](rng) for name in names)


def corpus(n_documents: int, seed: int = 0) -> list[str]:
    """`n_documents` pretraining documents drawn with `seed`."""
    rng = random.Random(seed)
    return [corpus_document(rng) for _ in range(n_documents)]
