"""Template families: each built-in task's skill in new sentence forms and word lists.

A variant keeps its built-in's draw (the same skill and corruption) and changes either the
template or the word pool; its `family` is the built-in's name, so that leave-one-family-out
evaluation never trains on a near-copy of a held-out task. Every word is in the default
tokenizer's vocabulary (`foresight.tasks.vocab`).
"""

from __future__ import annotations

from foresight.tasks import vocab as V
from foresight.tasks.base import TASKS
from foresight.tasks.builtin import (
    IOI,
    Arithmetic,
    Bool,
    Docstring,
    Gender,
    GeneratedTask,
    GreaterThan,
    Induction,
    Reverse,
    Sentiment,
)

# (built-in class, variant name, class attributes that differ)
_VARIANTS: tuple[tuple[type[GeneratedTask], str, dict[str, object]], ...] = (
    (IOI, "ioi_handed", {"template": "then {a} and {b} were at the {place} , {s} handed a {obj} to"}),
    (IOI, "ioi_met", {"template": "{a} and {b} met at the {place} . later {s} gave the {obj} to"}),
    (IOI, "ioi_saw", {"template": "at the {place} {a} and {b} saw a {obj} . then {s} gave it to"}),
    (Gender, "gender_went", {"template": "{name} went to the {place} and then"}),
    (Gender, "gender_because", {"template": "{name} came back from the {place} because"}),
    (Sentiment, "sentiment_this", {"template": "this {noun} was {very} {adj} . sentiment :"}),
    (Sentiment, "sentiment_we", {"template": "we saw a {noun} and it was {very} {adj} . review :"}),
    (Sentiment, "sentiment_felt", {"template": "i felt the {noun} was {very} {adj} . answer :"}),
    (Arithmetic, "arithmetic_plus", {"template": "{} plus {} gives"}),
    (Arithmetic, "arithmetic_sum", {"template": "what is the sum of {} and {} ?"}),
    (Arithmetic, "arithmetic_add", {"template": "add {} and {} :"}),
    (GreaterThan, "greater_than_came", {"template": "the war came in the year {} and lasted to the year"}),
    (GreaterThan, "greater_than_after", {"template": "it was the year {} and then the year"}),
    (Induction, "induction_names", {"pool": V.NAMES}),
    (Induction, "induction_things", {"pool": V.OBJECTS + V.PLACES}),
    (Reverse, "reverse_backward", {"template": "backward {} : {}"}),
    (Reverse, "reverse_names", {"pool": V.NAMES}),
    (Bool, "bool_equals", {"template": "{} equals"}),
    (Bool, "bool_answer", {"template": "what is {} ? answer :"}),
    (Docstring, "docstring_takes", {"template": "function {function} takes ( {signature} ) : {docs} param"}),
    (Docstring, "docstring_uses", {"template": "def {function} ( {signature} ) -> {docs} param"}),
)


def _variant(base: type[GeneratedTask], name: str, attributes: dict[str, object]) -> type[GeneratedTask]:
    return type(
        "".join(part.capitalize() for part in name.split("_")),
        (base,),
        {"name": name, "family": base.name, "description": f"{base.description} (variant)", **attributes},
    )


for _base, _name, _attributes in _VARIANTS:
    TASKS.register(_name, _variant(_base, _name, _attributes))
