"""Recovering a planted circuit (`tests/planted.py`) with eap, eap-ig and patching, at node and
edge level, and keeping it through SFT on a second task.

The planted set is stated in `planted.PLANTED_NODES` / `PLANTED_EDGES`; the thresholds are the
`THRESHOLDS` table below. Candidates are ranked by |score| (`foresight.circuits.rank`),
precision@k takes k = the planted set's size, AUROC scores every candidate by |score|.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from planted import (
    FIRST,
    PLANTED_EDGES,
    PLANTED_NODES,
    PlantedTask,
    planted_model,
    planted_pairs,
    planted_tokenizer,
)
from sklearn.metrics import roc_auc_score

from foresight.architectures import graph_of
from foresight.attribution import attribute, faithfulness
from foresight.circuit_metrics import circuit_distance
from foresight.circuits import circuit, ranked_candidates
from foresight.encoding import PairBatch
from foresight.graph import Graph
from trackers.store import load_trajectory
from trackers.tracker import CircuitTracker, TrackerSettings

# (method, level) -> (min precision@k, min AUROC). Measured: patching and eap-ig recover the
# planted sets exactly, eap the nodes; at edge level first-order eap ranks the distractor edges
# a0.h3->a1 and a0.h2->a1 above embed->a0 (p@4 0.75, AUROC 0.983).
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


def test_tracker_keeps_the_planted_circuit_through_sft_on_a_second_task(setup, tmp_path: Path) -> None:
    """`CircuitTracker` (eap-ig, node and edge level, k = 2) on a plain PyTorch SFT loop (all
    parameters, Adam, lr 3e-4, 40 steps) on a second task that the distractors can carry: tell
    noise word n8 from n9 by the parity of the first word (loss on the two noise logits). At
    every checkpoint (every 10 steps) the stored top-2 nodes and top-4 edges are the planted sets,
    and the tracker's Circuit Distance to step 0 stays within the bootstrap noise floor of step 0.
    (The second task raises the noise logits, so the planted task's top-1 accuracy over the
    whole vocabulary falls; its logit difference, what the circuit computes, does not vanish.)"""
    _, pairs = setup
    model = planted_model()
    floor = bootstrap_floor(model, pairs, "node", 2)
    settings = TrackerSettings(every=10, method="eap-ig", n_pairs=16, n_eval=32, circuit_size=2)
    manifest = {"run_id": "planted", "model": "planted", "seed": 0, "strategy": "free", "config": {}}
    tracker = CircuitTracker(
        [PlantedTask()], planted_tokenizer(), graph_of(model), tmp_path, manifest, settings
    )
    g = torch.Generator().manual_seed(2)
    words = torch.stack([torch.randperm(8, generator=g)[:6] for _ in range(64)])
    tokens = torch.cat([torch.full((64, 1), planted_tokenizer().bos_token_id), FIRST + words], 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    losses = []
    for step in range(41):
        if settings.is_checkpoint(step):
            tracker.take_checkpoint(model, step)
        model.train()
        loss = torch.nn.functional.cross_entropy(model(tokens).logits[:, -1, FIRST + 8 :], words[:, 0] % 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]  # the second task was learned (1.03 -> 0.59)
    table = load_trajectory(tmp_path / "planted")
    assert sorted(table.step.unique()) == [0, 10, 20, 30, 40]
    for step, rows in table.groupby("step"):
        for level, planted in (("node", PLANTED_NODES), ("edge", PLANTED_EDGES)):
            scores = rows[rows.level == level].set_index("component").score
            assert circuit(scores.to_dict(), len(planted)) == planted, (step, level)
    metrics = tracker.metrics_frame("planted")
    assert (metrics.metric > 0.5 * metrics.metric.iloc[0]).all(), metrics.metric
    assert (metrics.cd_start_all <= floor).all(), metrics.cd_start_all
    assert metrics.accuracy.iloc[0] == 1.0  # the model solves the planted task before SFT
