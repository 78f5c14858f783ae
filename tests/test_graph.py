"""The graph's nodes and edges, its serialisation, and the adapters."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
)

from foresight.adapters import UnsupportedArchitecture, get_adapter
from foresight.graph import Graph, node_kind, node_position


def read_time(receiver: str, n_layers: int, parallel: bool) -> float:
    """When a receiver reads the residual, on a clock where layer L spans [3L, 3L + 3)."""
    if receiver == "logits":
        return 3 * n_layers
    layer = int(receiver[1:])
    return 3 * layer + (1 if receiver[0] == "a" or parallel else 2)


def write_time(sender: str) -> float:
    if sender == "embed":
        return -1
    layer, head = node_position(sender, 1000)
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
    assert set(graph.edge_names()) == expected
    assert len(graph.edge_names()) == len(expected)
    assert ("a1.h0", "m1") in expected if not parallel else ("a1.h0", "m1") not in expected
    assert graph.edge_labels()[0] == "embed->a0"


def test_nodes_and_positions() -> None:
    graph = Graph(n_layers=2, n_heads=3)
    names = graph.node_names()
    assert names[0] == "embed" and names[-1] == "logits" and len(names) == 2 + 2 * 3 + 2
    assert [node_kind(n) for n in ("embed", "a1.h2", "m0", "logits", "a0.h1->m1")] == [
        "embed", "head", "mlp", "logits", "edge"
    ]  # fmt: skip
    assert node_position("a1.h2", 2) == (1, 2)
    assert node_position("logits", 2) == (2, -1)
    assert node_position("embed->a1", 2) == (-1, -1)


def test_json_round_trip_and_fingerprint() -> None:
    graph = Graph(n_layers=4, n_heads=2, parallel=True)
    assert Graph.from_json(graph.to_json()) == graph
    assert Graph.from_dict(graph.to_dict()) == graph
    assert graph.fingerprint() == Graph.from_json(graph.to_json()).fingerprint()
    assert graph.fingerprint() != Graph(n_layers=4, n_heads=2, parallel=False).fingerprint()
    with pytest.raises(ValueError, match="granularity"):
        Graph(2, 2, granularity="qkv")


def tiny(family: str, parallel: bool = True) -> torch.nn.Module:
    if family == "llama":
        config = LlamaConfig(
            vocab_size=30, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)  # fmt: skip
        return LlamaForCausalLM(config)
    if family == "gpt2":
        return GPT2LMHeadModel(GPT2Config(vocab_size=30, n_embd=16, n_layer=3, n_head=4, n_positions=32))
    config = GPTNeoXConfig(
        vocab_size=30, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
        num_attention_heads=4, max_position_embeddings=32, use_parallel_residual=parallel)  # fmt: skip
    return GPTNeoXForCausalLM(config)


@pytest.mark.parametrize(
    ("family", "parallel"), [("llama", False), ("gpt2", False), ("neox", True), ("neox", False)]
)
def test_graph_from_model(family: str, parallel: bool) -> None:
    graph = Graph.from_model(tiny(family, parallel))
    assert (graph.n_layers, graph.n_heads, graph.parallel) == (3, 4, parallel)


def test_adapter_sees_through_peft() -> None:
    model = tiny("llama")
    wrapped = get_peft_model(model, LoraConfig(r=2, target_modules=["o_proj", "q_proj"]))
    adapter = get_adapter(wrapped)
    assert adapter.model is model
    assert type(adapter.attn_out[0]).__module__.startswith("peft")
    assert Graph.from_model(wrapped) == Graph.from_model(model)


def test_unknown_architecture_names_the_supported_ones() -> None:
    with pytest.raises(UnsupportedArchitecture, match="Linear.*LlamaForCausalLM.*GPT2LMHeadModel.*GPTNeoX"):
        get_adapter(torch.nn.Linear(2, 2))
