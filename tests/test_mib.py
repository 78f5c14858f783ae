"""MIB's CPR and CMD (`foresight.attribution.mib`): a closed-form curve, greedy selection,
and the metrics on a real model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import random_pairs, tiny_model
from torch import nn

from foresight.attribution import attribute
from foresight.attribution.faithfulness import faithfulness
from foresight.attribution.mib import MIB_GRID, evaluate_mib, greedy, mib_metrics, select
from foresight.attribution.scores import Scores
from foresight.encoding import PairBatch
from foresight.graph import Graph


@pytest.fixture(scope="module")
def tiny_batch() -> tuple[nn.Module, PairBatch]:
    """A tiny random float64 GPT-2 (2 layers, 4 heads) and 6 random pairs of 6 tokens."""
    return tiny_model("gpt2", seed=3, scale=3.0, dtype=torch.float64, vocab=40), random_pairs(
        40, 6, 6, seed=5
    )


class AdditiveEvaluator:
    """A model whose metric is additive over edges: m(C) - m(empty) = sum of w_e over C, so
    faithfulness(C) = sum_C w / sum_all w."""

    def __init__(self, weights: dict[str, float]):
        self.weights = weights
        self.total = sum(weights.values())

    def faithfulness(self, circuit, level):  # noqa: ANN001, ANN201
        assert level == "edge"
        return sum(self.weights[e] for e in circuit) / self.total


def test_cpr_and_cmd_match_their_closed_form() -> None:
    # 1000 edges: 200 contribute +1, 100 contribute -1, 700 nothing (sum 100). Foresight
    # scores are metric changes on patching: score = -contribution. The -1 edges sort first
    # among equal |score| (names "n..." < "p..."), so the |score| ranking takes them first.
    weights = {f"p{i:04d}->x": 1.0 for i in range(200)}
    weights |= {f"n{i:04d}->x": -1.0 for i in range(100)}
    weights |= {f"z{i:04d}->x": 0.0 for i in range(700)}
    names = sorted(weights)
    scores = Scores(Graph(1, 1), "edge", "eap", "logit_diff", names,
                    np.array([-weights[n] for n in names]), 1.0, 0.0)  # fmt: skip
    result = evaluate_mib(AdditiveEvaluator(weights), scores)
    # signed ranking: the +1 edges, then the zeros, then the -1 edges, so n = 1000 b members
    # give f = 10 b up to b = 0.2, f = 2 at b = 0.5, f = 1 at b = 1
    grid = np.array(MIB_GRID)
    assert result.cpr_curve.faithfulness.tolist() == pytest.approx([10 * b for b in grid[:8]] + [2.0, 1.0])
    # area: int_{0.001}^{0.2} 10 b db (exact for a linear piece) + 0.3 * 2 + 0.5 * (2 + 1) / 2
    cpr = 5 * (0.2**2 - 0.001**2) + 0.6 + 0.75
    assert result.cpr == pytest.approx(cpr, abs=1e-12)
    # |score| ranking: the 100 -1 edges (f = -10 b up to b = 0.1), then the +1 edges:
    # f(0.2) = (100 - 100) / 100 = 0, f(0.5) = (200 - 100) / 100 = 1, f(1) = 1
    assert result.cmd_curve.faithfulness.tolist() == pytest.approx(
        [-10 * b for b in grid[:7]] + [0.0, 1.0, 1.0]
    )
    # |1 - f| = 1 + 10 b on [0.001, 0.1]; trapezoids 0.1 * (2 + 1) / 2, 0.3 * (1 + 0) / 2, 0
    cmd = (0.1 - 0.001) + 5 * (0.1**2 - 0.001**2) + 0.15 + 0.15
    assert result.cmd == pytest.approx(cmd, abs=1e-12)
    assert result.cmd_curve.n.tolist() == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]


def test_greedy_grows_from_the_logits() -> None:
    graph = Graph(n_layers=2, n_heads=1)
    # a0.h0->m1 scores highest, but m1 is reached only once an edge m1->logits is chosen
    scores = {e: 0.0 for e in graph.edge_labels()}
    scores |= {"a0.h0->m1": -9.0, "m1->logits": -1.0, "a1.h0->logits": -2.0, "embed->a1": -3.0}
    chosen = greedy(scores, graph.n_layers, 4, absolute=True)
    assert chosen == ["a1.h0->logits", "embed->a1", "m1->logits", "a0.h0->m1"]
    # signed: the contributions -score; a positive score ranks last
    scores["a1.h0->logits"] = 2.0
    assert greedy(scores, graph.n_layers, 1, absolute=False) == ["m1->logits"]
    as_scores = Scores(graph, "node", "eap", "logit_diff", list(scores), np.zeros(len(scores)), 0, 0)
    with pytest.raises(ValueError, match="edge scores"):
        select(as_scores, 1, True, "greedy")


@pytest.mark.parametrize("selection", ["top-k", "greedy"])
def test_mib_metrics_on_a_model_are_the_trapezoid_of_real_faithfulness(tiny_batch, selection) -> None:
    model, batch = tiny_batch
    scores = attribute(model, batch, method="eap", level="edge")
    result = mib_metrics(model, batch, scores, selection=selection)
    frame = result.cmd_curve
    assert frame.faithfulness.iloc[-1] == pytest.approx(1.0, abs=1e-6)  # the full model
    # each point recomputed independently: the circuit's faithfulness by `faithfulness`
    for n, value in zip(frame.n, frame.faithfulness, strict=True):
        circuit = select(scores, int(n), True, selection)
        assert value == pytest.approx(faithfulness(model, batch, circuit, level="edge"), abs=1e-6)
    x, f = frame.fraction.to_numpy(), np.abs(1 - frame.faithfulness.to_numpy())
    assert result.cmd == pytest.approx(float(((x[1:] - x[:-1]) * (f[1:] + f[:-1]) / 2).sum()))


def test_node_level_uses_heads_and_mlps(tiny_batch) -> None:
    model, batch = tiny_batch
    scores = attribute(model, batch, method="patching", level="node")
    result = mib_metrics(model, batch, scores)
    n_members = len(scores.graph.member_names())
    assert result.cpr_curve.n.tolist() == [int(b * n_members) for b in MIB_GRID]
    assert result.cpr_curve.faithfulness.iloc[-1] == pytest.approx(1.0, abs=1e-6)
    assert torch.isfinite(torch.tensor(result.cpr)) and result.cmd >= 0


def test_signed_ranking_follows_the_metric_direction() -> None:
    """With the clean metric below the corrupted one, the components that carry the task have
    positive scores, and the signed ranking takes them first."""
    names = ["a->x", "b->x", "c->x"]
    up = Scores(Graph(1, 1), "edge", "eap", "logit_diff", names, np.array([-3.0, 1.0, -2.0]), 1.0, 0.0)
    down = Scores(Graph(1, 1), "edge", "eap", "logit_diff", names, np.array([3.0, -1.0, 2.0]), 0.0, 1.0)
    assert select(up, 2, absolute=False) == select(down, 2, absolute=False) == ["a->x", "c->x"]


def test_attribute_cli_prints_cpr_and_cmd(tiny_model_dir, monkeypatch, capsys) -> None:
    from foresight.app.cli import main

    args = ["attribute", "--task", "ioi", "--model", str(tiny_model_dir), "--level", "edge",
            "--n-pairs", "4", "--top", "2", "--faithfulness", "mib"]  # fmt: skip
    monkeypatch.setattr("sys.argv", ["foresight", *args])
    main()
    out = capsys.readouterr().out
    assert "MIB, top-k: CPR" in out and "MIB, greedy: CPR" in out and "100.0%" in out
    monkeypatch.setattr("sys.argv", ["foresight", *args[:-1], "auc"])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 2 and "--faithfulness 'auc'" in capsys.readouterr().err
