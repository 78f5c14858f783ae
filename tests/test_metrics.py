"""The three circuit metrics on hand-built cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from foresight.circuit_metrics import (
    circuit_conflict,
    circuit_distance,
    circuit_stability,
    score_stability,
)

A = {"embed", "a0.h0", "a0.h1", "m0", "logits"}
B = {"embed", "a0.h1", "a1.h0", "m0", "m1", "logits"}


def test_circuit_distance_all() -> None:
    # A ∩ B = {embed, a0.h1, m0, logits} (4); A ∪ B adds a0.h0, a1.h0, m1 (7)
    assert circuit_distance(A, B) == pytest.approx(1 - 4 / 7)
    assert circuit_distance(B, A) == pytest.approx(3 / 7)


def test_circuit_distance_by_kind() -> None:
    # heads: {a0.h0, a0.h1} vs {a0.h1, a1.h0}: 1 shared of 3
    assert circuit_distance(A, B, "head") == pytest.approx(2 / 3)
    # MLPs: {m0} vs {m0, m1}: 1 shared of 2
    assert circuit_distance(A, B, "mlp") == pytest.approx(0.5)


def test_circuit_distance_edges_and_extremes() -> None:
    e1, e2 = ["embed->a0.h0", "a0.h0->logits"], ["embed->a0.h0", "m0->logits", "a0.h1->m0"]
    assert circuit_distance(e1, e2) == pytest.approx(1 - 1 / 4)
    assert circuit_distance(e1, e2, "head") == 0.0  # no head nodes in an edge circuit
    assert circuit_distance(A, A) == 0.0
    assert circuit_distance({"a0.h0"}, {"m0"}) == 1.0
    assert circuit_distance(set(), set()) == 0.0
    assert circuit_distance({"m0"}, {"m1"}, "head") == 0.0
    with pytest.raises(ValueError, match="kind"):
        circuit_distance(A, B, "edges")  # type: ignore[arg-type]


def test_circuit_stability() -> None:
    assert circuit_stability(0.45, 0.9) == pytest.approx(0.5)
    assert circuit_stability(0.9, 0.9) == 1.0
    assert circuit_stability(-0.2, 0.8) == pytest.approx(-0.25)
    assert math.isnan(circuit_stability(0.5, 0.0))  # undefined: the current circuit explains nothing
    with pytest.raises(ValueError, match="faith_old_on_new"):
        circuit_stability(float("nan"), 0.5)
    with pytest.raises(ValueError, match="faith_new_on_new"):
        circuit_stability(0.5, float("inf"))


def test_score_stability_aligns_by_name() -> None:
    s1 = {"a0.h0": 1.0, "a0.h1": 2.0, "m0": 3.0, "m1": 4.0}
    # same ranks, given in another order: rho = 1
    s2 = pd.Series({"m1": 40.0, "m0": 30.0, "a0.h1": 2.5, "a0.h0": -1.0})
    assert score_stability(s1, s2) == pytest.approx(1.0)
    # reversed ranks: rho = -1
    assert score_stability(s1, {k: -v for k, v in s1.items()}) == pytest.approx(-1.0)
    # ranks (1,2,3,4) vs (2,1,4,3): d^2 sum = 4, rho = 1 - 6*4/(4*15) = 0.6
    s3 = {"a0.h0": 2.0, "a0.h1": 1.0, "m0": 4.0, "m1": 3.0}
    assert score_stability(s1, s3) == pytest.approx(0.6)


def test_score_stability_validation() -> None:
    s1 = {"a0.h0": 1.0, "m0": 2.0, "m1": 3.0}
    with pytest.raises(ValueError, match="'m0'"):
        score_stability(s1, {"a0.h0": 1.0, "m0": float("nan"), "m1": 3.0})
    with pytest.raises(ValueError, match="'m1'"):
        score_stability({"a0.h0": 1.0, "m0": 2.0, "m1": float("inf")}, s1)
    with pytest.raises(ValueError, match="different components"):
        score_stability(s1, {"a0.h0": 1.0, "m0": 2.0, "m2": 3.0})
    assert math.isnan(score_stability(s1, {"a0.h0": 1.0, "m0": 1.0, "m1": 1.0}))


def test_circuit_conflict() -> None:
    ca = {"a0.h0", "a0.h1", "m0", "m1"}
    cb = {"a0.h1", "m0", "m1", "a1.h0"}
    grads_a = {
        "a0.h1": np.array([1.0, 0.0]),
        "m0": np.array([[1.0, 2.0], [0.0, 1.0]]),
        "m1": np.array([0.0, 0.0]),
        "a0.h0": np.array([5.0, 5.0]),
    }
    grads_b = {
        "a0.h1": np.array([-1.0, 3.0]),  # dot -1: conflict
        "m0": np.array([[1.0, -1.0], [0.0, 0.0]]),  # dot 1 - 2 = -1: conflict
        "m1": np.array([-1.0, 0.0]),  # zero gradient: no conflict
        "a1.h0": np.array([1.0, 1.0]),
    }
    # union has 5 components, 2 of the 3 shared ones conflict
    assert circuit_conflict(grads_a, grads_b, ca, cb) == pytest.approx(2 / 5)
    assert circuit_conflict(grads_a, grads_a, ca, cb) == 0.0
    assert circuit_conflict({}, {}, set(), set()) == 0.0
    assert circuit_conflict({}, {}, {"m0"}, {"m1"}) == 0.0  # nothing shared


def test_circuit_conflict_validation() -> None:
    g = {"m0": np.array([1.0, 2.0])}
    with pytest.raises(ValueError, match="task B.*'m0'"):
        circuit_conflict(g, {"m0": np.array([1.0, np.nan])}, {"m0"}, {"m0"})
    with pytest.raises(ValueError, match="'m0'.*no gradient"):
        circuit_conflict(g, {}, {"m0"}, {"m0"})
    with pytest.raises(ValueError, match="shapes"):
        circuit_conflict(g, {"m0": np.ones(3)}, {"m0"}, {"m0"})
