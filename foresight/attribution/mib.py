"""MIB's circuit-localization metrics (arXiv 2504.13151): CPR and CMD.

A circuit of budget b (a fraction of the candidates: all edges at level "edge", the heads
and MLPs at level "node") has n = floor(b * N) members, chosen from the scores by

- "top-k": the n largest by the ranking key, ties by name (`foresight.circuits.rank`);
- "greedy" (edges only, MIB's `apply_greedy`): starting from `logits`, repeatedly the
  best-keyed edge whose receiver is already reached; choosing s->r reaches s, and with it
  the edges into s (into `a{L}` for a head of layer L, into `m{L}` for an MLP).

Its faithfulness is (m(C) - m(empty)) / (m(full) - m(empty)) with everything outside C
patched to its corrupted value (`faithfulness.CircuitEvaluator`). Over MIB's budget grid
`MIB_GRID` (0.1% .. 50%, and 100%, where every circuit is the full model: f = 1):

- CPR = trapezoid area under f(b), circuits ranked by signed contribution (higher better);
- CMD = trapezoid area under |1 - f(b)|, circuits ranked by |score| (lower better).

Sign: a Foresight score is metric(patched) - metric(clean), so a component that carries the
task moves the metric towards m(empty): its score has the sign of m(empty) - m(full). MIB
attributes the negated logit difference (`loss=True`, clean above corrupted), so its signed
ranking ("absolute=False") is by contribution = -score * sign(m(full) - m(empty)), largest
first (the same as MIB's wherever the clean metric is above the corrupted one).
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
from torch import nn
from transformers import PreTrainedTokenizerBase

from foresight import components
from foresight.attribution.api import as_batch
from foresight.attribution.faithfulness import CircuitEvaluator, Pairs
from foresight.attribution.runner import eval_mode
from foresight.attribution.scores import Scores
from foresight.circuits import is_candidate, rank

MIB_GRID: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
SELECTIONS = ("top-k", "greedy")


class Evaluator(Protocol):
    """What the curves need: the faithfulness of a circuit at a level."""

    def faithfulness(self, circuit: Collection[str], level: str) -> float:
        """(m(C) - m(empty)) / (m(full) - m(empty)) of `circuit` at `level`."""
        ...


def budget(fraction: float, n_items: int) -> int:
    """Members of a circuit of `fraction` of `n_items` candidates: floor, as MIB counts."""
    return int(fraction * n_items)


def _keys(scores: Mapping[str, float], absolute: bool, direction: float) -> dict[str, float]:
    """The ranking key of every candidate: |score|, or the contribution -score * direction."""
    return {n: abs(v) if absolute else -v * direction for n, v in scores.items() if is_candidate(n)}


def direction(scores: Scores) -> float:
    """sign(m(full) - m(empty)) of the scores' metric (+1 where they are equal)."""
    return -1.0 if scores.metric_value < scores.corrupted_value else 1.0


def top_n(scores: Mapping[str, float], n: int, absolute: bool, direction: float = 1.0) -> list[str]:
    """The n candidates of largest key (|score|, or -score * direction), ties by name."""
    return rank(_keys(scores, absolute, direction), magnitude=False)[:n]


def _input_of(sender: str, n_layers: int) -> str | None:
    """The receiver whose input a sender reads (None for embed)."""
    kind = components.kind(sender)
    if kind == "head":
        return components.attention_input(components.position(sender, n_layers)[0])
    return sender if kind == "mlp" else None


def greedy(
    scores: Mapping[str, float], n_layers: int, n: int, absolute: bool, direction: float = 1.0
) -> list[str]:
    """n edges grown from `logits` (module docstring), in the order they were chosen; ties
    by name. Stops early only if fewer than n edges can be reached."""
    keys = _keys(scores, absolute, direction)
    into: dict[str, list[str]] = {}
    for edge in keys:
        into.setdefault(components.edge_ends(edge)[1], []).append(edge)
    heap = [(-keys[e], e) for e in into.get("logits", [])]
    heapq.heapify(heap)
    reached, chosen = {"logits"}, []
    while heap and len(chosen) < n:
        _, edge = heapq.heappop(heap)
        chosen.append(edge)
        receiver = _input_of(components.edge_ends(edge)[0], n_layers)
        if receiver is not None and receiver not in reached:
            reached.add(receiver)
            for e in into.get(receiver, []):
                heapq.heappush(heap, (-keys[e], e))
    return chosen


def select(scores: Scores, n: int, absolute: bool, selection: str = "top-k") -> list[str]:
    """The circuit of n members of `scores` under `selection` ("top-k" or "greedy")."""
    if selection not in SELECTIONS:
        raise ValueError(f"unknown selection {selection!r} (known: {', '.join(SELECTIONS)})")
    if selection == "greedy":
        if scores.level != "edge":
            raise ValueError("greedy selection grows edge circuits: it needs edge scores")
        return greedy(scores.as_dict(), scores.graph.n_layers, n, absolute, direction(scores))
    return top_n(scores.as_dict(), n, absolute, direction(scores))


def curve(
    evaluator: Evaluator,
    scores: Scores,
    absolute: bool,
    selection: str = "top-k",
    grid: Sequence[float] = MIB_GRID,
) -> pd.DataFrame:
    """Faithfulness at every budget of `grid`: columns fraction, n (members), faithfulness."""
    n_items = sum(map(is_candidate, scores.names))
    ns = [budget(f, n_items) for f in grid]
    values = [evaluator.faithfulness(select(scores, n, absolute, selection), scores.level) for n in ns]
    return pd.DataFrame({"fraction": list(grid), "n": ns, "faithfulness": values})


def area_under(fractions: Sequence[float], faithfulness: Sequence[float]) -> float:
    """Trapezoid area under faithfulness(fraction) (CPR of a signed-ranking curve)."""
    return float(np.trapezoid(np.asarray(faithfulness, float), np.asarray(fractions, float)))


def area_from_one(fractions: Sequence[float], faithfulness: Sequence[float]) -> float:
    """Trapezoid area under |1 - faithfulness(fraction)| (CMD of an |score|-ranking curve)."""
    return area_under(fractions, np.abs(1.0 - np.asarray(faithfulness, float)))


@dataclass
class MibMetrics:
    """CPR, CMD and their curves (columns fraction, n, faithfulness)."""

    cpr: float
    cmd: float
    cpr_curve: pd.DataFrame
    cmd_curve: pd.DataFrame

    def row(self) -> dict[str, float]:
        """cpr, cmd and the faithfulness at each budget (f_signed@b, f_abs@b)."""
        out = {"cpr": self.cpr, "cmd": self.cmd}
        for tag, frame in (("signed", self.cpr_curve), ("abs", self.cmd_curve)):
            out |= {f"f_{tag}@{b:g}": v for b, v in zip(frame.fraction, frame.faithfulness, strict=True)}
        return out


def evaluate_mib(
    evaluator: Evaluator, scores: Scores, selection: str = "top-k", grid: Sequence[float] = MIB_GRID
) -> MibMetrics:
    """CPR and CMD of `scores` (module docstring) with one evaluator."""
    signed = curve(evaluator, scores, absolute=False, selection=selection, grid=grid)
    magnitude = curve(evaluator, scores, absolute=True, selection=selection, grid=grid)
    return MibMetrics(
        area_under(signed.fraction, signed.faithfulness),
        area_from_one(magnitude.fraction, magnitude.faithfulness),
        signed,
        magnitude,
    )


def mib_metrics(
    model: nn.Module,
    pairs: Pairs,
    scores: Scores,
    selection: str = "top-k",
    grid: Sequence[float] = MIB_GRID,
    batch_size: int | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> MibMetrics:
    """CPR and CMD of `scores` on `model` and `pairs` (real interventions)."""
    batch = as_batch(model, pairs, tokenizer)
    with eval_mode(model):
        evaluator = CircuitEvaluator.of_batch(model, batch, scores.metric, batch_size)
        return evaluate_mib(evaluator, scores, selection, grid)


def mib_frame(evaluator: Evaluator, scores: Scores, grid: Sequence[float] = MIB_GRID) -> pd.DataFrame:
    """CPR, CMD and both curves of `scores` for every selection that its level has (top-k;
    greedy for edges), one row per budget: columns level, selection, fraction, n, f_signed,
    f_abs, cpr, cmd."""
    frames = []
    for selection in SELECTIONS if scores.level == "edge" else ("top-k",):
        result = evaluate_mib(evaluator, scores, selection, grid)
        frames.append(
            pd.DataFrame(
                {
                    "level": scores.level,
                    "selection": selection,
                    "fraction": result.cpr_curve.fraction,
                    "n": result.cpr_curve.n,
                    "f_signed": result.cpr_curve.faithfulness,
                    "f_abs": result.cmd_curve.faithfulness,
                    "cpr": result.cpr,
                    "cmd": result.cmd,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
