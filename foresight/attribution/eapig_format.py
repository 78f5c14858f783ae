"""Scores and circuits in the EAP-IG library's graph JSON (the file MIB submissions hand in).

The file is ``{"cfg": {n_layers, n_heads, parallel_attn_mlp, d_model}, "nodes": {name:
{"in_graph", ["score"]}}, "edges": {name: {"score", "in_graph"}}}`` with EAP-IG's names:
`input` (Foresight's `embed`), `a{L}.h{H}`, `m{L}`, `logits`; an edge into a head names the
head's query, key or value input: ``a0.h1->a1.h2<q>``.

Mapping of Foresight's graph (block receivers):

- an edge s->m{L} or s->logits is the EAP-IG edge of the same name;
- an edge s->a{L} (the input of the whole attention block) is the 3 x n_heads EAP-IG edges
  s->a{L}.h{H}<q|k|v>; each gets 1/(3 n_heads) of its score (their sum is the block score,
  the only one Foresight measures: the split between heads and q/k/v is not known) and the
  block edge's membership;
- sign: EAP-IG/MIB scores attribute the negated task metric (MIB's ``loss=True``), so an
  exported score is -(Foresight score): positive for what carries the task.

Node circuits are written as EAP-IG writes them after a node-level top-n: a node's
``in_graph`` is its membership (`input` and `logits` always in), and an edge is in the graph
when both its ends are. Reading a file back (`from_eapig`) inverts all of this.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from foresight import components
from foresight.graph import Graph

QKV = "qkv"
_NAMES = {"embed": "input"}
_BACK = {"input": "embed"}


def _eapig_name(name: str) -> str:
    return _NAMES.get(name, name)


def _expand(graph: Graph, sender: str, receiver: str) -> list[str]:
    """The EAP-IG edge names of Foresight edge sender->receiver."""
    s = _eapig_name(sender)
    layers = [L for L in range(graph.n_layers) if receiver == components.attention_input(L)]
    if not layers:
        return [f"{s}->{receiver}"]
    layer = layers[0]
    return [f"{s}->{components.head(layer, h)}<{x}>" for h in range(graph.n_heads) for x in QKV]


def _edge_receiver_node(eapig_edge: str) -> str:
    """The node an EAP-IG edge feeds (the head, without its <q|k|v>)."""
    return eapig_edge.split("->")[1].split("<")[0]


def to_eapig(
    graph: Graph,
    d_model: int,
    circuit: Collection[str],
    edge_scores: Mapping[str, float] | None = None,
    node_scores: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The EAP-IG graph dict of Foresight scores (edge and/or node names -> score) and a
    `circuit` (edge names, or head and MLP names for a node circuit)."""
    circuit = set(circuit)
    edge_circuit = any(components.EDGE_SEPARATOR in c for c in circuit)
    if edge_circuit:
        members = {"embed", "logits"} | {components.edge_ends(e)[0] for e in circuit}
    else:
        members = {"embed", "logits"} | circuit
    nodes: dict[str, dict[str, Any]] = {}
    for name in graph.node_names():
        nodes[_eapig_name(name)] = {"in_graph": name in members}
        if node_scores is not None and name != "logits":
            nodes[_eapig_name(name)]["score"] = -float(node_scores[name])
    edges: dict[str, dict[str, Any]] = {}
    for sender, receiver in graph.edge_pairs():
        label = components.edge(sender, receiver)
        expanded = _expand(graph, sender, receiver)
        score = 0.0 if edge_scores is None else -float(edge_scores[label]) / len(expanded)
        for name in expanded:
            if edge_circuit:
                inside = label in circuit
            else:
                inside = sender in members and _edge_receiver_node(name) in members
            edges[name] = {"score": score, "in_graph": inside}
    cfg = {"n_layers": graph.n_layers, "n_heads": graph.n_heads, "parallel_attn_mlp": graph.parallel}
    return {"cfg": cfg | {"d_model": d_model}, "nodes": nodes, "edges": edges}


def from_eapig(data: Mapping[str, Any], level: str) -> tuple[Graph, dict[str, float], set[str]]:
    """The graph, Foresight scores (edges at level "edge", nodes at "node") and circuit of an
    EAP-IG graph dict written by `to_eapig` (per-head q/k/v edges summed back to their block
    edge; a block edge is in the circuit when any of its parts is)."""
    cfg = data["cfg"]
    graph = Graph(cfg["n_layers"], cfg["n_heads"], parallel=bool(cfg["parallel_attn_mlp"]))
    if level == "node":
        nodes = data["nodes"]
        scores = {n: -float(nodes[_eapig_name(n)]["score"]) for n in graph.senders()}
        members = {n for n in graph.member_names() if nodes[_eapig_name(n)]["in_graph"]}
        return graph, scores, members
    scores, circuit = {}, set()
    for sender, receiver in graph.edge_pairs():
        label = components.edge(sender, receiver)
        parts = [data["edges"][name] for name in _expand(graph, sender, receiver)]
        scores[label] = -sum(float(p["score"]) for p in parts)
        if any(p["in_graph"] for p in parts):
            circuit.add(label)
    return graph, scores, circuit
