"""The three circuit metrics of Foresight: Circuit Distance (migration), Circuit
Stability (does the old map still explain the new model) and Circuit Conflict
(cross-task interference).

A circuit is a collection of component names (`foresight.components`), as
`foresight.circuits.circuit` selects it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Literal

import numpy as np
import pandas as pd

from foresight import components

CircuitKind = Literal["all", "head", "mlp"]
CIRCUIT_KINDS: tuple[CircuitKind, ...] = ("all", "head", "mlp")


def _restrict(circuit: Collection[str], kind: CircuitKind) -> set[str]:
    if kind not in CIRCUIT_KINDS:
        raise ValueError(f"kind must be one of {CIRCUIT_KINDS}, not {kind!r}")
    return set(circuit) if kind == "all" else {c for c in circuit if components.kind(c) == kind}


def circuit_distance(a: Collection[str], b: Collection[str], kind: CircuitKind = "all") -> float:
    """Circuit Distance CD = 1 - |A ∩ B| / |A ∪ B| (1 - Jaccard) of two circuits.

    With kind "head" or "mlp", both circuits are first restricted to components
    of that kind; "all" keeps every name (nodes and edges). Two empty (restricted)
    circuits are at distance 0.0.
    """
    sa, sb = _restrict(a, kind), _restrict(b, kind)
    union = sa | sb
    return 0.0 if not union else 1.0 - len(sa & sb) / len(union)


def circuit_stability(faith_old_on_new: float, faith_new_on_new: float) -> float:
    """Circuit Stability CS(t, t') = F_{t'}(C_t) / F_{t'}(C_{t'}).

    F_{t'}(C) is the faithfulness of circuit C evaluated on the model at checkpoint
    t'; C_t is the old circuit, C_{t'} the circuit found at t'. 1 means the old map
    explains the new model as well as the current circuit does. NaN when the current
    circuit has faithfulness 0 (the ratio is undefined: a tracked run logs NaN and goes
    on); ValueError on a non-finite input.
    """
    for name, value in (("faith_old_on_new", faith_old_on_new), ("faith_new_on_new", faith_new_on_new)):
        if not math.isfinite(value):
            raise ValueError(f"{name} is not finite: {value}")
    if faith_new_on_new == 0:
        return math.nan
    return faith_old_on_new / faith_new_on_new


def _as_series(scores: pd.Series | Mapping[str, float], what: str) -> pd.Series:
    series = scores.astype("float64") if isinstance(scores, pd.Series) else pd.Series(scores, dtype="float64")
    bad = series.index[~np.isfinite(series.to_numpy())]
    if len(bad):
        raise ValueError(f"{what}: non-finite score for component {bad[0]!r}")
    if series.index.has_duplicates:
        raise ValueError(f"{what}: duplicate component {series.index[series.index.duplicated()][0]!r}")
    return series


def score_stability(
    scores_t: pd.Series | Mapping[str, float], scores_t2: pd.Series | Mapping[str, float]
) -> float:
    """Score-level stability: Spearman rank correlation of two score vectors
    (component name -> score) aligned by component name.

    Both must score the same set of components (ValueError otherwise, and on
    non-finite scores). NaN when either vector is constant (correlation undefined).
    """
    s1, s2 = _as_series(scores_t, "scores_t"), _as_series(scores_t2, "scores_t2")
    if set(s1.index) != set(s2.index):
        only = sorted(set(s1.index) ^ set(s2.index))
        raise ValueError(f"score vectors cover different components, e.g. {only[:3]}")
    if len(s1) < 2:
        raise ValueError("score stability needs at least 2 components")
    from scipy.stats import spearmanr  # deferred: scipy.stats takes seconds to import

    s2 = s2.reindex(s1.index)
    if s1.nunique() < 2 or s2.nunique() < 2:
        return float("nan")
    return float(spearmanr(s1.to_numpy(), s2.to_numpy()).statistic)


def circuit_conflict(
    grads_a: Mapping[str, np.ndarray],
    grads_b: Mapping[str, np.ndarray],
    circuit_a: Collection[str],
    circuit_b: Collection[str],
) -> float:
    """Circuit Conflict CC(A, B) = |{c ∈ A ∩ B : cos(g_A(c), g_B(c)) < 0}| / |A ∪ B|.

    g_A(c) is the gradient of task A's loss with respect to component c's
    parameters, flattened (any shape; both tasks' shapes must agree); A and B are
    the two tasks' circuits. A zero gradient has cosine 0 (no conflict). Empty
    union -> 0.0. Raises ValueError on a non-finite gradient or a missing one for
    a shared component.
    """
    for task, grads in (("A", grads_a), ("B", grads_b)):
        for name, g in grads.items():
            if not np.all(np.isfinite(g)):
                raise ValueError(f"task {task}: non-finite gradient for component {name!r}")
    dots = {}
    for name in sorted(set(circuit_a) & set(circuit_b)):
        if name not in grads_a or name not in grads_b:
            raise ValueError(f"component {name!r} is in both circuits but has no gradient for both tasks")
        ga = np.asarray(grads_a[name], dtype=np.float64).ravel()
        gb = np.asarray(grads_b[name], dtype=np.float64).ravel()
        if ga.shape != gb.shape:
            raise ValueError(f"component {name!r}: gradient shapes differ ({ga.size} vs {gb.size})")
        dots[name] = float(ga @ gb)
    return circuit_conflict_of_dots(dots, circuit_a, circuit_b)


def circuit_conflict_of_dots(
    dots: Mapping[str, float], circuit_a: Collection[str], circuit_b: Collection[str]
) -> float:
    """CC(A, B) of `circuit_conflict` from the dot products g_A(c) . g_B(c) of the components
    in both circuits (the cosine has the sign of the dot product; 0 for a zero gradient).
    Empty union -> 0.0; ValueError if a shared component has no dot product."""
    shared = set(circuit_a) & set(circuit_b)
    union = set(circuit_a) | set(circuit_b)
    missing = sorted(shared - dots.keys())
    if missing:
        raise ValueError(f"component {missing[0]!r} is in both circuits but has no gradient for both tasks")
    return sum(dots[name] < 0 for name in shared) / len(union) if union else 0.0
