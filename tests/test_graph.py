"""The graph's nodes and edges, its serialisation, and the architecture adapters."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from tiny_models import tiny_model

from foresight import components
from foresight.architectures import UnsupportedArchitecture, graph_of
from foresight.architectures.hooks import get_adapter
from foresight.graph import Graph


def read_time(receiver: str, n_layers: int, parallel: bool) -> float:
    """When a receiver reads the residual, on a clock where layer L spans [3L, 3L + 3)."""
    if receiver == "logits":
        return 3 * n_layers
    layer = int(receiver[1:])
    return 3 * layer + (1 if receiver[0] == "a" or parallel else 2)


def write_time(sender: str) -> float:
    if sender == "embed":
        return -1
    layer, head = components.position(sender, 1000)
    return 3 * layer + (1.5 if head >= 0 else 2.5)


@pytest.mark.parametrize("parallel", [False, True])
def test_edges_are_exactly_the_writes_before_reads(parallel: bool) -> None:
    graph = Graph(n_layers=3, n_heads=2, parallel=parallel)
    expected = {
        (s, r)
        for s in graph.senders()
        for r in graph.receivers()
        if write_time(s) < read_time(r, 3, parallel)
    }
    assert set(graph.edge_pairs()) == expected
    assert len(graph.edge_pairs()) == len(expected)
    assert ("a1.h0", "m1") in expected if not parallel else ("a1.h0", "m1") not in expected
    assert graph.edge_labels()[0] == "embed->a0"


@pytest.mark.parametrize(("n_layers", "n_heads", "parallel"), [(3, 2, False), (3, 2, True), (5, 4, False)])
def test_edge_order_and_index_follow_has_edge(n_layers: int, n_heads: int, parallel: bool) -> None:
    """Edges in sender-then-receiver order, exactly those that `has_edge` admits; the index
    points at their names and the labels spell them."""
    graph = Graph(n_layers=n_layers, n_heads=n_heads, parallel=parallel)
    senders, receivers = graph.senders(), graph.receivers()
    expected = [(s, r) for s in senders for r in receivers if graph.has_edge(s, r)]
    assert graph.edge_pairs() == expected
    rows, cols = graph.edge_index()
    assert [(senders[i], receivers[j]) for i, j in zip(rows, cols, strict=True)] == expected
    assert graph.edge_labels() == [f"{s}->{r}" for s, r in expected]
    graph.edge_labels().clear()  # callers get copies
    assert len(graph.edge_labels()) == len(expected)


def test_nodes_and_positions() -> None:
    graph = Graph(n_layers=2, n_heads=3)
    names = graph.node_names()
    assert names[0] == "embed" and names[-1] == "logits" and len(names) == 2 + 2 * 3 + 2
    assert [components.kind(n) for n in ("embed", "a1.h2", "m0", "logits", "a0.h1->m1")] == [
        "embed", "head", "mlp", "logits", "edge"
    ]  # fmt: skip
    assert components.position("a1.h2", 2) == (1, 2)
    assert components.position("logits", 2) == (2, -1)
    assert components.position("embed->a1", 2) == (-1, -1)


def test_dict_round_trip_and_fingerprint() -> None:
    graph = Graph(n_layers=4, n_heads=2, parallel=True)
    assert Graph.from_dict(graph.to_dict()) == graph
    assert graph.fingerprint() == Graph.from_dict(graph.to_dict()).fingerprint()
    assert graph.fingerprint() != Graph(n_layers=4, n_heads=2, parallel=False).fingerprint()
    with pytest.raises(ValueError, match="granularity"):
        Graph(2, 2, granularity="qkv")


def tiny(family: str, parallel: bool = True) -> torch.nn.Module:
    extra = {"use_parallel_residual": parallel} if family == "gpt_neox" else {}
    return tiny_model(family, vocab=30, width=16, layers=3, heads=4, **extra)


@pytest.mark.parametrize(
    ("family", "parallel"), [("llama", False), ("gpt2", False), ("gpt_neox", True), ("gpt_neox", False)]
)
def test_graph_from_model(family: str, parallel: bool) -> None:
    graph = graph_of(tiny(family, parallel))
    assert (graph.n_layers, graph.n_heads, graph.parallel) == (3, 4, parallel)


def test_adapter_sees_through_peft() -> None:
    model = tiny("llama")
    wrapped = get_peft_model(model, LoraConfig(r=2, target_modules=["o_proj", "q_proj"]))
    adapter = get_adapter(wrapped)
    assert adapter.model is model
    assert type(adapter.attn_out[0]).__module__.startswith("peft")
    assert graph_of(wrapped) == graph_of(model)


def test_unknown_architecture_names_the_supported_ones() -> None:
    with pytest.raises(UnsupportedArchitecture, match=r"None.*gpt2, gpt_neox, llama.*families/"):
        get_adapter(torch.nn.Linear(2, 2))
