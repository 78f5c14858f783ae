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
from functools import cache
from typing import Any

from foresight import components as names

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

    def senders(self) -> list[str]:
        """embed, then per layer L: a{L}.h0 .. a{L}.h{H-1}, m{L}."""
        senders = ["embed"]
        for layer in range(self.n_layers):
            senders += [names.head(layer, h) for h in range(self.n_heads)] + [names.mlp(layer)]
        return senders

    def receivers(self) -> list[str]:
        """a0, m0, a1, m1, ..., logits."""
        inputs = [(names.attention_input(layer), names.mlp(layer)) for layer in range(self.n_layers)]
        return [r for pair in inputs for r in pair] + ["logits"]

    def node_names(self) -> list[str]:
        """Senders followed by `logits`."""
        return self.senders() + ["logits"]

    def member_names(self) -> list[str]:
        """The heads and MLPs (the possible circuit members), in sender order."""
        return names.members(self.senders())

    def edge_index(self) -> tuple[list[int], list[int]]:
        """(sender indices, receiver indices) of every edge, in `edge_pairs` order (indices in
        `senders` and `receivers` order)."""
        rows, cols = _edge_index(self.n_layers, self.n_heads, self.parallel)
        return list(rows), list(cols)

    def edge_pairs(self) -> list[tuple[str, str]]:
        """Every (sender, receiver) pair of the graph, senders in order, receivers in order."""
        return list(_edge_pairs(self))

    def edge_labels(self) -> list[str]:
        """Edge names as "sender->receiver" strings, in `edge_pairs` order."""
        return list(_edge_labels(self))

    def has_edge(self, sender: str, receiver: str) -> bool:
        """Whether `sender` writes to the residual stream before `receiver` reads it."""
        s_layer, s_head = names.position(sender, self.n_layers)
        if receiver == "logits":
            return True
        r_layer, _ = names.position(receiver, self.n_layers)
        if receiver == names.mlp(r_layer) and s_head >= 0 and not self.parallel:
            return r_layer >= s_layer
        return r_layer > s_layer

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict (what manifests and forecasters store)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Graph:
        """The graph of a `to_dict` dict."""
        return cls(**data)

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON of `to_dict` (equal graphs, equal fingerprints): the one
        identity check of "same graph" (trajectories, forecasters and models all compare it)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


@cache
def _edge_index(n_layers: int, n_heads: int, parallel: bool) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """`Graph.edge_index` from the layer arithmetic of `Graph.has_edge` (computed once per shape):
    sender s (embed: layer -1) feeds every receiver from the first one after its write on, i.e.
    from a{L+1} (index 2L + 2), or from m{L} (2L + 1) for a head without a parallel residual."""
    per_layer, n_receivers = n_heads + 1, 2 * n_layers + 1
    rows: list[int] = []
    cols: list[int] = []
    for s in range(1 + n_layers * per_layer):
        layer, slot = divmod(s - 1, per_layer) if s else (-1, -1)
        first = 2 * layer + 1 if 0 <= slot < n_heads and not parallel else 2 * layer + 2
        rows += [s] * (n_receivers - first)
        cols += range(first, n_receivers)
    return tuple(rows), tuple(cols)


@cache
def _edge_pairs(graph: Graph) -> tuple[tuple[str, str], ...]:
    """`Graph.edge_pairs` (computed once per graph)."""
    senders, receivers = graph.senders(), graph.receivers()
    rows, cols = _edge_index(graph.n_layers, graph.n_heads, graph.parallel)
    return tuple((senders[i], receivers[j]) for i, j in zip(rows, cols, strict=True))


@cache
def _edge_labels(graph: Graph) -> tuple[str, ...]:
    """`Graph.edge_labels` (computed once per graph)."""
    return tuple(names.edge(s, r) for s, r in graph.edge_pairs())
