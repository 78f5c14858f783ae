"""Recovering a planted circuit (`tests/planted.py`) with eap, eap-ig and patching, at node and
edge level, and keeping it through SFT on a second task.

The planted set is stated in `planted.PLANTED_NODES` / `PLANTED_EDGES`; the thresholds are the
`THRESHOLDS` table below. Candidates are ranked by |score| (`foresight.circuits.rank`),
precision@k takes k = the planted set's size, AUROC scores every candidate by |score|.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from planted import PLANTED_EDGES, PLANTED_NODES, planted_model, planted_pairs
from sklearn.metrics import roc_auc_score

from foresight.attribution import attribute, faithfulness
from foresight.circuit_metrics import circuit_distance
from foresight.circuits import circuit, ranked_candidates
from foresight.encoding import PairBatch
from foresight.graph import Graph

# (method, level) -> (min precision@k, min AUROC). Measured: patching and eap-ig recover the
# planted sets exactly, eap the nodes; at edge level first-order eap ranks a distractor edge
# into a1 above a0.h0->a1 (p@4 0.75, AUROC 0.983).
THRESHOLDS = {
    ("patching", "node"): (1.0, 1.0),
    ("patching", "edge"): (1.0, 1.0),
    ("eap-ig", "node"): (1.0, 1.0),
    ("eap-ig", "edge"): (1.0, 1.0),
    ("eap", "node"): (1.0, 1.0),
    ("eap", "edge"): (0.75, 0.95),
}

pytestmark = pytest.mark.usefixtures("one_thread")


def recovery(scores: dict[str, float], planted: set[str]) -> tuple[float, float]:
    """(precision@|planted|, AUROC) of the candidates ranked by |score| against `planted`."""
    ranked = ranked_candidates(scores)
    precision = len(set(ranked[: len(planted)]) & planted) / len(planted)
    auroc = roc_auc_score([n in planted for n in ranked], [abs(scores[n]) for n in ranked])
    return precision, float(auroc)


@pytest.fixture(scope="module")
def setup() -> tuple[torch.nn.Module, PairBatch]:
    return planted_model(), planted_pairs(16)


def test_the_planted_circuit_computes_the_task(setup) -> None:
    """Ground truth, by interventions alone: the planted circuit keeps the task (faithfulness
    near 1), everything else without it keeps nothing (0), at both levels."""
    model, pairs = setup
    assert faithfulness(model, pairs, PLANTED_NODES, level="node") > 0.98
    assert faithfulness(model, pairs, PLANTED_EDGES, level="edge") > 0.98
    rest = set(Graph(2, 4).edge_labels()) - PLANTED_EDGES
    assert abs(faithfulness(model, pairs, rest, level="edge")) < 1e-9
    others = set(Graph(2, 4).member_names()) - PLANTED_NODES
    assert abs(faithfulness(model, pairs, others, level="node")) < 0.05


@pytest.mark.parametrize(("method", "level"), list(THRESHOLDS))
def test_methods_recover_the_planted_circuit(setup, method: str, level: str) -> None:
    model, pairs = setup
    scores = attribute(model, pairs, method=method, level=level).as_dict()
    planted = PLANTED_NODES if level == "node" else PLANTED_EDGES
    precision, auroc = recovery(scores, planted)
    low_p, low_auc = THRESHOLDS[method, level]
    assert precision >= low_p and auroc >= low_auc, (method, level, precision, auroc)
    # the same check fails for a wrong answer key: the distractor heads as "planted"
    wrong = {"a0.h1", "a0.h2"} if level == "node" else {"a0.h1->a1", "a0.h2->a1", "embed->m0", "m1->logits"}
    assert recovery(scores, wrong)[0] < low_p


def bootstrap_floor(model: torch.nn.Module, pairs: PairBatch, level: str, k: int, n: int = 20) -> float:
    """95th percentile of Circuit Distance between the circuit on all pairs and circuits on
    bootstrap resamples of the pairs (the same model: what CD is read against)."""
    full = circuit(attribute(model, pairs, method="eap-ig", level=level).as_dict(), k)
    g = torch.Generator().manual_seed(1)
    distances = []
    for _ in range(n):
        idx = torch.randint(0, len(pairs), (len(pairs),), generator=g)
        resample = PairBatch(*(t[idx] for t in pairs.__dict__.values()))
        scores = attribute(model, resample, method="eap-ig", level=level).as_dict()
        distances.append(circuit_distance(full, circuit(scores, k)))
    return float(np.quantile(distances, 0.95))


def test_planted_circuit_survives_sft_on_a_second_task(setup) -> None:
    """SFT (all parameters, Adam, lr 1e-3, 30 steps) on a second task that the distractors can
    carry: tell noise token 8 from 9 by the parity of the first token (loss on the two noise
    logits). At every 10th step eap-ig's top-2 nodes and top-4 edges are the planted sets, and
    Circuit Distance to step 0 stays within the bootstrap noise floor of step 0."""
    _, pairs = setup
    model = planted_model()
    floors = {
        "node": bootstrap_floor(model, pairs, "node", 2),
        "edge": bootstrap_floor(model, pairs, "edge", 4),
    }
    start = {"node": PLANTED_NODES, "edge": PLANTED_EDGES}
    g = torch.Generator().manual_seed(2)
    tokens = torch.stack([torch.randperm(8, generator=g)[:6] for _ in range(64)])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for step in range(31):
        if step % 10 == 0:
            model.eval()
            for level, planted in start.items():
                now = circuit(attribute(model, pairs, method="eap-ig", level=level).as_dict(), len(planted))
                assert now == planted, (step, level, now)
                assert circuit_distance(start[level], now) <= floors[level]
        model.train()
        loss = torch.nn.functional.cross_entropy(model(tokens).logits[:, -1, 8:], tokens[:, 0] % 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]  # the second task was learned
