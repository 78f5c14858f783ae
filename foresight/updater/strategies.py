"""Which components to update: pure selection functions over component names.

Only heads `a{L}.h{H}` and MLPs `m{L}` can be updated; `embed`, `logits` and
edges are never selected. Strategies:

- free: every head and MLP of the graph;
- static: the top-k by |attribution score| at step 0 (the "old map");
- random: as many heads and as many MLPs as a reference set, drawn with a seed;
- predictive / oracle / dynamic: the top-k of forecast or hindsight scores
  (`select_from_scores`; the caller chooses the scores and when to re-select).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping

from foresight.metrics import component_kind

UPDATABLE_KINDS = ("head", "mlp")


def _updatable(components: Iterable[str]) -> list[str]:
    return sorted(c for c in components if component_kind(c) in UPDATABLE_KINDS)


def select_free(graph_components: Iterable[str]) -> set[str]:
    """Every head and MLP among `graph_components`."""
    return set(_updatable(graph_components))


def select_from_scores(scores: Mapping[str, float], k: int) -> set[str]:
    """The k heads and MLPs with the largest |score| (ties broken by name)."""
    candidates = _updatable(scores)
    if not 0 < k <= len(candidates):
        raise ValueError(f"k={k}: must be in 1..{len(candidates)} (the number of scored heads and MLPs)")
    return set(sorted(candidates, key=lambda c: -abs(scores[c]))[:k])


def select_static(scores_at_step0: Mapping[str, float], k: int) -> set[str]:
    """The static ("old map") circuit: the top-k |score| heads and MLPs at step 0."""
    return select_from_scores(scores_at_step0, k)


def kind_counts(components: Iterable[str]) -> tuple[int, int]:
    """(number of heads, number of MLPs) among `components`."""
    kinds = [component_kind(c) for c in components]
    return kinds.count("head"), kinds.count("mlp")


def select_random(candidates: Iterable[str], n_heads: int, n_mlps: int, seed: int) -> set[str]:
    """`n_heads` heads and `n_mlps` MLPs drawn uniformly from `candidates` with `seed`."""
    pool = _updatable(candidates)
    rng = random.Random(seed)
    chosen: set[str] = set()
    for kind, n in (("head", n_heads), ("mlp", n_mlps)):
        of_kind = [c for c in pool if component_kind(c) == kind]
        if not 0 <= n <= len(of_kind):
            raise ValueError(f"{kind}s: cannot draw {n} of {len(of_kind)} candidates")
        chosen.update(rng.sample(of_kind, n))
    return chosen
