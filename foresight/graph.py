"""The computational graph of a transformer as circuits see it.

Nodes: `embed`, every attention head `a{L}.h{H}`, every MLP `m{L}` and `logits`.
Senders (they write to the residual stream): embed, heads, MLPs, in the order
embed, then per layer its heads and its MLP. Receivers (they read the residual
stream; granularity "block"): the input of attention block `a{L}`, the input of
MLP `m{L}`, and `logits` (the final norm's input), in forward order.

An edge `s->r` exists when s writes to the residual stream before r reads it:
a head or MLP of layer L feeds every receiver of a later layer and `logits`; a
head of layer L also feeds `m{L}` unless the model has a parallel residual
(GPT-NeoX `use_parallel_residual`), where attention and MLP of one layer read
the same residual.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

GRANULARITIES = ("block",)


@dataclass(frozen=True)
class Graph:
    """The node and edge sets of a model (see the module docstring)."""

    n_layers: int
    n_heads: int
    parallel: bool = False
    granularity: str = "block"

    def __post_init__(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity {self.granularity!r} is not one of {GRANULARITIES}")
        if self.n_layers < 1 or self.n_heads < 1:
            raise ValueError(
                f"a graph needs n_layers >= 1 and n_heads >= 1, got {self.n_layers}, {self.n_heads}"
            )

    @classmethod
    def from_model(cls, model: nn.Module) -> Graph:
        """The graph of a supported Hugging Face causal LM (PEFT-wrapped or not)."""
        from foresight.adapters import get_adapter

        return get_adapter(model).graph

    def senders(self) -> list[str]:
        """embed, then per layer L: a{L}.h0 .. a{L}.h{H-1}, m{L}."""
        names = ["embed"]
        for layer in range(self.n_layers):
            names += [f"a{layer}.h{h}" for h in range(self.n_heads)] + [f"m{layer}"]
        return names

    def receivers(self) -> list[str]:
        """a0, m0, a1, m1, ..., logits."""
        return [f"{k}{layer}" for layer in range(self.n_layers) for k in "am"] + ["logits"]

    def node_names(self) -> list[str]:
        """Senders followed by `logits`."""
        return self.senders() + ["logits"]

    def edge_names(self) -> list[tuple[str, str]]:
        """Every (sender, receiver) pair of the graph, senders in order, receivers in order."""
        return [(s, r) for s in self.senders() for r in self.receivers() if self.has_edge(s, r)]

    def edge_labels(self) -> list[str]:
        """Edge names as "sender->receiver" strings, in `edge_names` order."""
        return [f"{s}->{r}" for s, r in self.edge_names()]

    def has_edge(self, sender: str, receiver: str) -> bool:
        s_layer, s_head = node_position(sender, self.n_layers)
        if receiver == "logits":
            return True
        r_layer = int(receiver[1:])
        if receiver[0] == "m" and s_head >= 0 and not self.parallel:
            return r_layer >= s_layer
        return r_layer > s_layer

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Graph:
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Graph:
        return cls.from_dict(json.loads(text))

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON (equal graphs, equal fingerprints)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()


def node_kind(name: str) -> str:
    """The kind of a node or edge name: embed, head, mlp, logits or edge."""
    if "->" in name:
        return "edge"
    if name in ("embed", "logits"):
        return name
    return "head" if ".h" in name else "mlp"


def node_position(name: str, n_layers: int) -> tuple[int, int]:
    """(layer, head) of a node: embed (-1, -1), logits (n_layers, -1), m{L} (L, -1);
    an edge has its sender's position."""
    name = name.split("->")[0]
    if name == "embed":
        return -1, -1
    if name == "logits":
        return n_layers, -1
    if ".h" in name:
        layer, head = name[1:].split(".h")
        return int(layer), int(head)
    return int(name[1:]), -1
