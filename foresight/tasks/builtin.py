"""The built-in synthetic task suite (after the seed study's task list).

Each task's SFT format differs from the sentences of the pretraining corpus
(`foresight.factory.corpus`), which teaches the underlying skill in other words.
"""

from __future__ import annotations

import random

from foresight.tasks import vocab as V
from foresight.tasks.base import TASKS, AttributionPair, Example
from foresight.tasks.generated import GeneratedTask


def _other(rng: random.Random, pool: tuple[str, ...], *exclude: str) -> str:
    return rng.choice([w for w in pool if w not in exclude])


class IOI(GeneratedTask):
    """Indirect object identification: who received the object; `draw` makes one example and its pair."""

    name = "ioi"
    description = "indirect object identification: who received the object"
    template = "when {a} and {b} went to the {place} , {s} gave a {obj} to"

    def draw(self, rng: random.Random) -> tuple[Example, AttributionPair]:
        io, s, c = rng.sample(V.NAMES, 3)
        place, obj = rng.choice(V.PLACES), rng.choice(V.OBJECTS)
        first, second = (io, s) if rng.random() < 0.5 else (s, io)
        prompt = self.template.format(a=first, b=second, place=place, s=s, obj=obj)
        corrupted = self.template.format(a=first, b=second, place=place, s=c, obj=obj)
        return Example(prompt, io), AttributionPair(prompt, corrupted, io, s)


class GreaterThan(GeneratedTask):
    """Name a year later than the start of the war; `draw` makes one example and its pair."""

    name = "greater_than"
    description = "name a year later than the start of the war"
    template = "the war lasted from the year {} to the year"

    def draw(self, rng: random.Random) -> tuple[Example, AttributionPair]:
        start = rng.randint(16, 93)
        template = self.template
        prompt = template.format(start)
        later = tuple(str(y) for y in range(start + 1, 100))
        answer = str(rng.randint(start + 1, min(start + 15, 99)))
        right, wrong = str(start + rng.randint(1, min(5, 99 - start))), str(start - rng.randint(1, 5))
        corrupted = template.format(start - rng.randint(6, 10))
        return Example(prompt, answer, later), AttributionPair(prompt, corrupted, right, wrong)


class Induction(GeneratedTask):
    """Continue a repeated sequence of random words; `draw` makes one example and its pair."""

    name = "induction"
    description = "continue a repeated sequence of random words"
    pool: tuple[str, ...] = V.WORDS

    def draw(self, rng: random.Random) -> tuple[Example, AttributionPair]:
        length = rng.randint(5, 7)
        words = rng.sample(self.pool, length + length)
        seq, fresh = words[:length], words[length:]
        shown = rng.randint(2, length - 1)
        prompt = " ".join(seq + seq[:shown])
        corrupted = " ".join(seq + fresh[:shown])
        answer = seq[shown]
        wrong = rng.choice([w for w in seq if w != answer])
        return Example(prompt, answer), AttributionPair(prompt, corrupted, answer, wrong)


class Reverse(GeneratedTask):
    """Write a list of words backwards; `draw` makes one example and its pair."""

    name = "reverse"
    description = "write a list of words backwards"
    template = "reverse {} = {}"
    pool: tuple[str, ...] = V.WORDS

    def draw(self, rng: random.Random) -> tuple[Example, AttributionPair]:
        length = rng.randint(3, 5)
        seq = rng.sample(self.pool, length)
        shown = rng.randint(1, length - 1)
        backwards = seq[::-1]
        answer = backwards[shown]
        template = self.template
        prompt = template.format(" ".join(seq), " ".join(backwards[:shown]))
        replacement = _other(rng, self.pool, *seq)
        changed = [replacement if w == answer else w for w in seq]
        corrupted = template.format(" ".join(changed), " ".join(backwards[:shown]))
        return Example(prompt, answer), AttributionPair(prompt, corrupted, answer, replacement)


def _truth(literal: tuple[bool, bool]) -> bool:
    negated, value = literal
    return value != negated


def bool_value(literals: list[tuple[bool, bool]], ops: list[str]) -> bool:
    """Left-to-right evaluation of `l0 op0 l1 op1 l2`."""
    value = _truth(literals[0])
    for op, literal in zip(ops, literals[1:], strict=True):
        value = (value and _truth(literal)) if op == "and" else (value or _truth(literal))
    return value


class Bool(GeneratedTask):
    """Evaluate a boolean expression left to right; `draw` makes one example and its pair."""

    name = "bool"
    description = "evaluate a boolean expression left to right"
    template = "{} is"

    def _render(self, literals: list[tuple[bool, bool]], ops: list[str]) -> str:
        words = [("not " if neg else "") + ("true" if val else "false") for neg, val in literals]
        return self.template.format(f"{words[0]} {ops[0]} {words[1]} {ops[1]} {words[2]}")

    def draw(self, rng: random.Random) -> tuple[Example, AttributionPair]:
        while True:
            literals = [(rng.random() < 0.3, rng.random() < 0.5) for _ in range(3)]
            ops = [rng.choice(("and", "or")) for _ in range(2)]
            value = bool_value(literals, ops)
            flips = [i for i in range(3) if bool_value(self._flip(literals, i), ops) != value]
            if flips:
                break
        corrupted = self._render(self._flip(literals, rng.choice(flips)), ops)
        answer, wrong = ("true", "false") if value else ("false", "true")
        prompt = self._render(literals, ops)
        return Example(prompt, answer), AttributionPair(prompt, corrupted, answer, wrong)

    @staticmethod
    def _flip(literals: list[tuple[bool, bool]], i: int) -> list[tuple[bool, bool]]:
        return [(neg, not val) if j == i else (neg, val) for j, (neg, val) in enumerate(literals)]


class Arithmetic(GeneratedTask):
    """Add two small numbers; `draw` makes one example and its pair."""

    name = "arithmetic"
    description = "add two small numbers"
    template = "{} + {} ="

    def draw(self, rng: random.Random) -> tuple[Example, AttributionPair]:
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        b2 = _other_int(rng, 0, 20, b)
        prompt, corrupted = self.template.format(a, b), self.template.format(a, b2)
        return Example(prompt, str(a + b)), AttributionPair(prompt, corrupted, str(a + b), str(a + b2))


def _other_int(rng: random.Random, low: int, high: int, exclude: int) -> int:
    value = rng.randint(low, high - 1)
    return value + 1 if value >= exclude else value


class Gender(GeneratedTask):
    """The pronoun that refers to a named person; `draw` makes one example and its pair."""

    name = "gender"
    description = "the pronoun that refers to a named person"
    template = "after the meeting at the {place} , {name} said that"

    def draw(self, rng: random.Random) -> tuple[Example, AttributionPair]:
        male = rng.random() < 0.5
        name = rng.choice(V.MALE_NAMES if male else V.FEMALE_NAMES)
        other = rng.choice(V.FEMALE_NAMES if male else V.MALE_NAMES)
        place = rng.choice(V.PLACES)
        template = self.template
        prompt, corrupted = template.format(place=place, name=name), template.format(place=place, name=other)
        answer, wrong = ("he", "she") if male else ("she", "he")
        return Example(prompt, answer), AttributionPair(prompt, corrupted, answer, wrong)


class Sentiment(GeneratedTask):
    """Classify a one-sentence review; `draw` makes one example and its pair."""

    name = "sentiment"
    description = "classify a one-sentence review"
    template = "review : the {noun} was {very} {adj} . sentiment :"

    def draw(self, rng: random.Random) -> tuple[Example, AttributionPair]:
        positive = rng.random() < 0.5
        adjective = rng.choice(V.POSITIVE if positive else V.NEGATIVE)
        opposite = rng.choice(V.NEGATIVE if positive else V.POSITIVE)
        intensifier, noun = rng.choice(("very", "really", "so")), rng.choice(V.REVIEWED)
        prompt = self.template.format(noun=noun, very=intensifier, adj=adjective)
        corrupted = self.template.format(noun=noun, very=intensifier, adj=opposite)
        answer, wrong = ("positive", "negative") if positive else ("negative", "positive")
        return Example(prompt, answer), AttributionPair(prompt, corrupted, answer, wrong)


class Docstring(GeneratedTask):
    """Name the next parameter of a function in its docstring; `draw` makes one example and its pair."""

    name = "docstring"
    description = "name the next parameter of a function in its docstring"
    template = "def {function} ( {signature} ) : {docs} param"

    def draw(self, rng: random.Random) -> tuple[Example, AttributionPair]:
        arity = rng.randint(3, 4)
        names = rng.sample(V.ARG_NAMES, arity + arity)
        args, decoys = names[:arity], names[arity:]
        shown = rng.randint(1, arity - 1)
        function = rng.choice(V.FUNCTION_NAMES)
        docs = " ".join(f"param {a} ." for a in args[:shown])

        def render(signature: list[str]) -> str:
            return self.template.format(function=function, signature=" , ".join(signature), docs=docs)

        prompt, corrupted = render(args), render(args[:shown] + decoys[shown:])
        answer, wrong = args[shown], decoys[shown]
        return Example(prompt, answer), AttributionPair(prompt, corrupted, answer, wrong)


for _task in (IOI, GreaterThan, Induction, Reverse, Bool, Arithmetic, Gender, Sentiment, Docstring):
    TASKS.register(_task.name, _task)
