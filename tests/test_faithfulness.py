"""Circuits and faithfulness by real interventions on tiny random models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import random_pairs, tiny_model
from torch import nn

from foresight.architectures import graph_of
from foresight.attribution import attribute, faithfulness, faithfulness_curve, minimal_circuit
from foresight.circuits import circuit, rank, ranked_candidates
from foresight.encoding import PairBatch

V, B, T = 40, 6, 6


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(family: str) -> nn.Module:
    name = "gpt_neox" if family == "neox" else family
    return tiny_model(name, seed=3, scale=3.0, dtype=torch.float64, vocab=V)


@pytest.fixture(scope="module")
def batch() -> PairBatch:
    return random_pairs(V, B, T, seed=5)


@pytest.mark.parametrize("family", ["gpt2", "neox"])
def test_full_is_one_empty_is_zero_and_single_removals_match_patching(family: str, batch: PairBatch) -> None:
    """faith(full) = 1 and faith(empty) = 0; removing one component c from the full circuit
    is patching c alone, so faith(all but c) = 1 + patching(c) / g with g = m(full) - m(empty)
    the same for every c: g = M(clean) - M(corrupted) for edges; for nodes, where embed
    stays in every circuit, g is whatever makes the ratio constant, and faith(all but embed) = 1."""
    model = build(family)
    graph = graph_of(model)
    for level, names in (("node", graph.senders()), ("edge", graph.edge_labels())):
        assert faithfulness(model, batch, names, level=level) == pytest.approx(1.0, abs=1e-12)
        assert faithfulness(model, batch, [], level=level) == pytest.approx(0.0, abs=1e-12)
        patch = attribute(model, batch, method="patching", level=level).as_dict()
        big = 1e-3 * max(abs(v) for v in patch.values())  # components with an effect to divide by
        tested = [n for n in names[:: max(1, len(names) // 8)] if n != "embed" and abs(patch[n]) > big]
        assert len(tested) >= 3
        ratios = []
        for name in tested:
            rest = [n for n in names if n != name]
            ratios.append((faithfulness(model, batch, rest, level=level, batch_size=4) - 1.0) / patch[name])
        gap = 1.0 / np.array(ratios)
        assert np.allclose(gap, gap[0], rtol=1e-8)
        if level == "edge":
            assert gap[0] == pytest.approx(patch_gap(model, batch), rel=1e-9)
    without_embed = [n for n in graph.senders() if n != "embed"]
    assert faithfulness(model, batch, without_embed) == pytest.approx(1.0, abs=1e-12)


def patch_gap(model: nn.Module, batch: PairBatch) -> float:
    """M(clean) - M(corrupted) of the logit difference, computed directly."""
    with torch.no_grad():
        values = []
        for ids in (batch.clean, batch.corrupted):
            last = model(input_ids=ids).logits[torch.arange(B), batch.last]
            values.append(
                (last.gather(1, batch.answer[:, None]) - last.gather(1, batch.wrong[:, None])).mean()
            )
    return float(values[0] - values[1])


def test_rank_orders_by_magnitude_and_circuit_takes_members_only() -> None:
    scores = {"a0.h0": 0.1, "m0": -3.0, "embed": 2.0, "logits": 0.0}
    assert rank(scores) == ["m0", "embed", "a0.h0", "logits"]
    assert circuit(scores, 2) == {"m0", "a0.h0"}  # embed and logits are never members


def test_curve_and_minimal_circuit(batch: PairBatch) -> None:
    model = build("gpt2")
    scores = attribute(model, batch, method="eap", level="node")
    n = len(scores.names) - 2  # every head and MLP: embed and logits are no members
    curve = faithfulness_curve(model, batch, scores, [1, 3, n])
    assert list(curve.k) == [1, 3, n] and curve.faithfulness.iloc[-1] == pytest.approx(1.0)
    first = faithfulness(model, batch, circuit(scores, 1))
    assert curve.faithfulness.iloc[0] == pytest.approx(first)
    with pytest.raises(ValueError, match="k = 0"):
        faithfulness_curve(model, batch, scores, [0])
    smallest = minimal_circuit(model, batch, scores, target=0.9)
    assert faithfulness(model, batch, smallest) >= 0.9
    assert smallest == ranked_candidates(scores)[: len(smallest)]
    assert np.isfinite(curve.faithfulness).all()


def test_unknown_names_are_rejected(batch: PairBatch) -> None:
    with pytest.raises(ValueError, match="not nodes of the graph: a9.h0"):
        faithfulness(build("gpt2"), batch, ["a9.h0"])
