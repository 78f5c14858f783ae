"""How a component of the computational graph is named, and what a name tells.

Nodes: `embed` (the residual stream entering block 0), `a{L}.h{H}` (attention
head H of layer L), `m{L}` (the MLP of layer L) and `logits` (the final norm's
input). Receivers at block granularity are also named `a{L}` (the input of
layer L's attention) and `m{L}` (the input of its MLP). An edge is named
`"{sender}->{receiver}"`. `KINDS` lists the kinds a name can have; heads and
MLPs (`MEMBER_KINDS`) are the only possible members of a circuit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

Kind = Literal["embed", "head", "mlp", "logits", "edge"]
KINDS: tuple[Kind, ...] = ("embed", "head", "mlp", "logits", "edge")
MEMBER_KINDS: tuple[Kind, ...] = ("head", "mlp")
EDGE_SEPARATOR = "->"

_HEAD = re.compile(r"a(\d+)\.h(\d+)")
_MLP = re.compile(r"m(\d+)")
_ATTENTION_INPUT = re.compile(r"a(\d+)")


def head(layer: int, index: int) -> str:
    """The name of head `index` of `layer`: `a{layer}.h{index}`."""
    return f"a{layer}.h{index}"


def mlp(layer: int) -> str:
    """The name of the MLP of `layer`: `m{layer}`."""
    return f"m{layer}"


def attention_input(layer: int) -> str:
    """The receiver name of the input of `layer`'s attention block: `a{layer}`."""
    return f"a{layer}"


def edge(sender: str, receiver: str) -> str:
    """The name of the edge from `sender` to `receiver`: `sender->receiver`."""
    return f"{sender}{EDGE_SEPARATOR}{receiver}"


def edge_ends(name: str) -> tuple[str, str]:
    """(sender, receiver) of an edge name; ValueError for a node name."""
    sender, sep, receiver = name.partition(EDGE_SEPARATOR)
    if not sep:
        raise ValueError(f"{name!r} is not an edge name 'sender->receiver'")
    return sender, receiver


def kind(name: str) -> Kind:
    """The kind of a component name: "embed", "head", "mlp", "logits" or "edge".

    ValueError for a name that follows none of the naming rules."""
    if EDGE_SEPARATOR in name:
        return "edge"
    if name in ("embed", "logits"):
        return name  # type: ignore[return-value]
    if _HEAD.fullmatch(name):
        return "head"
    if _MLP.fullmatch(name):
        return "mlp"
    raise ValueError(f"component {name!r}: not embed, logits, a{{L}}.h{{H}}, m{{L}} or an edge 'x->y'")


def is_member_kind(name: str) -> bool:
    """Whether `name` is a head or an MLP (a possible circuit member)."""
    return EDGE_SEPARATOR not in name and (_HEAD.fullmatch(name) or _MLP.fullmatch(name)) is not None


def members(names: Iterable[str]) -> list[str]:
    """The heads and MLPs among `names`, in their order."""
    return [n for n in names if is_member_kind(n)]


def position(name: str, n_layers: int) -> tuple[int, int]:
    """(layer, head) of a component: embed is layer -1, logits layer `n_layers`,
    an edge takes its sender's position, an attention input `a{L}` layer L;
    head is -1 for anything but a head."""
    if EDGE_SEPARATOR in name:
        return position(edge_ends(name)[0], n_layers)
    if name == "embed":
        return -1, -1
    if name == "logits":
        return n_layers, -1
    if match := _HEAD.fullmatch(name):
        return int(match.group(1)), int(match.group(2))
    if match := _MLP.fullmatch(name) or _ATTENTION_INPUT.fullmatch(name):
        return int(match.group(1)), -1
    raise ValueError(f"component {name!r}: not embed, logits, a{{L}}.h{{H}}, a{{L}}, m{{L}} or an edge")
