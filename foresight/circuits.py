"""What a circuit is: the one definition that the tracker, the predictors, the
updater and faithfulness share.

A circuit of size k is the top-k *candidates* by |score|: at node level the heads
and MLPs (`embed` and `logits` are never members: faithfulness keeps them clean),
at edge level the edges. One tie rule everywhere: equal |score|, the smaller name
(string order) first, so a circuit never depends on the order of its input.
Forecasts rank by the predicted score itself (`magnitude=False`: higher = more
likely a member), with the same candidates and tie rule.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
import pandas as pd

from foresight.components import EDGE_SEPARATOR, is_member_kind

ScoreMap = Mapping[str, float] | pd.Series


def is_candidate(name: str) -> bool:
    """Whether `name` can be a circuit member: a head, an MLP or an edge."""
    return EDGE_SEPARATOR in name or is_member_kind(name)


def candidates(names: Collection[str]) -> list[str]:
    """The possible circuit members among `names`, sorted by name."""
    return sorted(n for n in names if is_candidate(n))


def _as_dict(scores: ScoreMap) -> dict[str, float]:
    if isinstance(scores, pd.Series):
        return {str(k): float(v) for k, v in scores.items()}
    as_dict = getattr(scores, "as_dict", None)  # attribution Scores
    return dict(as_dict() if callable(as_dict) else scores)


def rank(scores: ScoreMap, magnitude: bool = True) -> list[str]:
    """Every name of `scores` by decreasing |score| (by score without `magnitude`), ties by
    name (the one tie rule)."""
    items = _as_dict(scores)
    names = sorted(items)
    values = np.array([items[n] for n in names], dtype=np.float64)
    key = np.abs(values) if magnitude else values
    order = np.argsort(-key, kind="stable")  # stable over names sorted ascending
    return [names[i] for i in order]


def ranked_candidates(scores: ScoreMap, magnitude: bool = True) -> list[str]:
    """The candidates (heads and MLPs, or edges) of `scores` in `rank` order."""
    return [n for n in rank(scores, magnitude) if is_candidate(n)]


def circuit(scores: ScoreMap, k: int, magnitude: bool = True) -> set[str]:
    """The circuit of size k: the top-k heads and MLPs (or edges) by |score| (by score
    without `magnitude`).

    `scores` maps component names to scores; names that are no candidate (embed,
    logits) are ignored. ValueError unless 1 <= k <= the number of candidates."""
    ranked = ranked_candidates(scores, magnitude)
    if not 1 <= k <= len(ranked):
        raise ValueError(f"k = {k}: must be in 1..{len(ranked)} (the number of scored heads and MLPs)")
    return set(ranked[:k])
