"""The three circuit metrics of Foresight: Circuit Distance (migration), Circuit
Stability (does the old map still explain the new model) and Circuit Conflict
(cross-task interference).

Components are named `embed`, `a{L}.h{H}` (attention head H of layer L), `m{L}`
(the MLP of layer L) and `logits`; an edge is named `"{sender}->{receiver}"`.
A circuit is a collection of such names.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from typing import Literal

import numpy as np
import pandas as pd

CircuitKind = Literal["all", "head", "mlp"]
CIRCUIT_KINDS: tuple[CircuitKind, ...] = ("all", "head", "mlp")
COMPONENT_KINDS = ("embed", "head", "mlp", "logits", "edge")

_HEAD = re.compile(r"a(\d+)\.h(\d+)")
_MLP = re.compile(r"m(\d+)")


def component_kind(name: str) -> str:
    """The kind of a component name: "embed", "head", "mlp", "logits" or "edge".

    Raises ValueError for a name that follows none of the naming rules.
    """
    if "->" in name:
        return "edge"
    if name in ("embed", "logits"):
        return name
    if _HEAD.fullmatch(name):
        return "head"
    if _MLP.fullmatch(name):
        return "mlp"
    raise ValueError(f"component {name!r}: not embed, logits, a{{L}}.h{{H}}, m{{L}} or an edge 'x->y'")


def component_position(name: str, n_layers: int) -> tuple[int, int]:
    """(layer, head) of a component: embed is layer -1, logits layer `n_layers`,
    an edge takes its sender's position; head is -1 for anything but a head."""
    if "->" in name:
        return component_position(name.split("->", 1)[0], n_layers)
    kind = component_kind(name)
    if kind == "embed":
        return -1, -1
    if kind == "logits":
        return n_layers, -1
    if kind == "head":
        layer, head = _HEAD.fullmatch(name).groups()  # type: ignore[union-attr]
        return int(layer), int(head)
    return int(_MLP.fullmatch(name).group(1)), -1  # type: ignore[union-attr]


def _restrict(circuit: Collection[str], kind: CircuitKind) -> set[str]:
    if kind not in CIRCUIT_KINDS:
        raise ValueError(f"kind must be one of {CIRCUIT_KINDS}, not {kind!r}")
    return set(circuit) if kind == "all" else {c for c in circuit if component_kind(c) == kind}


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
    explains the new model as well as the current circuit does. Raises ValueError
    on a non-finite input or a zero denominator.
    """
    for name, value in (("faith_old_on_new", faith_old_on_new), ("faith_new_on_new", faith_new_on_new)):
        if not math.isfinite(value):
            raise ValueError(f"{name} is not finite: {value}")
    if faith_new_on_new == 0:
        raise ValueError("faith_new_on_new is 0: circuit stability is undefined")
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
    shared = set(circuit_a) & set(circuit_b)
    union = set(circuit_a) | set(circuit_b)
    if not union:
        return 0.0
    conflicting = 0
    for name in sorted(shared):
        if name not in grads_a or name not in grads_b:
            raise ValueError(f"component {name!r} is in both circuits but has no gradient for both tasks")
        ga = np.asarray(grads_a[name], dtype=np.float64).ravel()
        gb = np.asarray(grads_b[name], dtype=np.float64).ravel()
        if ga.shape != gb.shape:
            raise ValueError(f"component {name!r}: gradient shapes differ ({ga.size} vs {gb.size})")
        if float(ga @ gb) < 0:  # the cosine has the sign of the dot product
            conflicting += 1
    return conflicting / len(union)


def metric_table(circuits: Mapping[int, Collection[str]]) -> pd.DataFrame:
    """Circuit Distance of the circuit at every step against the first step's (the
    old map) and against the previous checkpoint's, for all components, heads and MLPs.

    Returns one row per step (ascending) with columns step, cd_vs_start_{all,head,mlp},
    cd_vs_prev_{all,head,mlp}; the first row's cd_vs_prev_* are NaN.
    """
    steps = sorted(circuits)
    rows = []
    for i, step in enumerate(steps):
        row: dict[str, float] = {"step": step}
        for kind in CIRCUIT_KINDS:
            row[f"cd_vs_start_{kind}"] = circuit_distance(circuits[steps[0]], circuits[step], kind)
        for kind in CIRCUIT_KINDS:
            prev = circuit_distance(circuits[steps[i - 1]], circuits[step], kind) if i else float("nan")
            row[f"cd_vs_prev_{kind}"] = prev
        rows.append(row)
    columns = ["step"] + [f"cd_vs_{ref}_{k}" for ref in ("start", "prev") for k in CIRCUIT_KINDS]
    return pd.DataFrame(rows, columns=columns).astype({"step": "int64"})
