"""One circuit definition: the tracker, the predictors, the updater and faithfulness select
the same circuit from the same scores, ties included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from foresight.circuits import circuit, rank
from foresight.graph import Graph
from foresight.tasks import get_task
from foresight.updater import FinetuneConfig
from foresight.updater.strategies import Context, Dynamic
from predictors.base import forecast
from predictors.baselines import Last
from predictors.features import features_at
from predictors.problem import ForecastProblem, observe, split_runs
from trackers.store import graph_column, scores_table
from trackers.tracker import CircuitTracker, TrackerSettings

GRAPH = Graph(n_layers=2, n_heads=3)
# ties everywhere: |score| 3 for a1.h2 and m0, 2 for a0.h0 and a1.h0 and embed, 1 for the rest
SCORES = {n: 1.0 for n in GRAPH.node_names()} | {"a1.h2": -3.0, "m0": 3.0, "a0.h0": 2.0, "a1.h0": -2.0}
SCORES |= {"embed": 2.0, "logits": -50.0}


def brute_force(scores: dict[str, float], k: int) -> set[str]:
    """Every head and MLP ordered by (-|score|, name): the definition written out by hand."""
    members = [n for n in scores if n not in ("embed", "logits")]
    return set(sorted(members, key=lambda n: (-abs(scores[n]), n))[:k])


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_every_consumer_selects_the_same_circuit(k: int) -> None:
    expected = brute_force(SCORES, k)
    assert circuit(SCORES, k) == expected
    assert circuit(dict(reversed(list(SCORES.items()))), k) == expected  # input order does not matter

    # predictors: `last` forecasts the circuit at checkpoint k of a one-checkpoint run
    rows = pd.DataFrame(
        {
            "run": "r", "task": "t", "seed": 0, "model": "m", "strategy": "free",
            "graph": graph_column(GRAPH), "step": 0, "level": "node", "component": list(SCORES),
            "kind": "head", "layer": 0, "head": 0, "score": list(SCORES.values()), "grad_norm": 1.0,
            "method": "eap", "lookahead": np.nan, "regime_mode": "full", "regime_strategy": "free",
            "regime_lr": 1e-3,
        }
    )  # fmt: skip
    (run,) = split_runs(rows)
    problem = ForecastProblem(prefix=0, horizon="final", circuit_size=k)
    table = forecast(Last(problem).fit([run]), run)
    assert set(table.loc[table.in_circuit, "component"]) == expected
    features = features_at(observe(run, problem), problem)
    assert set(features.index[features.in_circuit_k == 1]) == expected

    # the updater: `dynamic` re-localizes with the same rule
    context = Context(FinetuneConfig(components=k), GRAPH, None, set(), Path("."), None, None)
    assert Dynamic(context).reselect(0, None, lambda: SCORES) == expected


def test_the_tracker_restores_the_same_circuit(tmp_path: Path, tokenizer) -> None:  # noqa: ANN001
    """A resumed tracker recovers its start circuit from the stored scores with the same rule."""
    manifest = {"run_id": "r", "model": "m", "seed": 0}
    settings = TrackerSettings(circuit_size=3, levels=("node",), n_pairs=4, n_eval=4)
    first = CircuitTracker([get_task("ioi")], tokenizer, GRAPH, tmp_path, manifest, settings)
    table = scores_table(SCORES, GRAPH.n_layers, "eap", dict.fromkeys(GRAPH.member_names(), 1.0))
    first.states["ioi"].writer.write_checkpoint(0, table, {})
    resumed = CircuitTracker([get_task("ioi")], tokenizer, GRAPH, tmp_path, manifest, settings, resume=True)
    assert resumed.states["ioi"].start_circuit == brute_force(SCORES, 3)


def test_rank_breaks_ties_by_name_and_circuit_checks_k() -> None:
    assert rank({"b": 1.0, "a": -1.0, "c": 2.0}) == ["c", "a", "b"]
    assert rank({"b": 1.0, "a": -1.0, "c": 2.0}, magnitude=False) == ["c", "b", "a"]
    with pytest.raises(ValueError, match="1..8"):
        circuit(SCORES, 9)  # 6 heads and 2 MLPs


def test_edge_circuits_rank_edges() -> None:
    edges = {e: float(i) for i, e in enumerate(GRAPH.edge_labels())}
    assert circuit(edges, 2) == set(GRAPH.edge_labels()[-2:])
    assert np.isclose(len(circuit(edges, len(edges))), len(edges))
