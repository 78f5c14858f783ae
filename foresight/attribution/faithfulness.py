"""The faithfulness of circuits (`foresight.circuits`), by real interventions.

m(C) is the batch-mean metric on the clean prompts with everything outside the
circuit C patched to its corrupted value: for a node circuit, every head and MLP
outside C takes its corrupted activation; `embed` and `logits` are always in a
node circuit (the input and the output: a circuit of heads and MLPs without its
input would read only the corrupted prompt), so naming them changes nothing. For
an edge circuit, every edge outside C is patched (its receiver reads the sender's
corrupted write in place of the sender's write in this run), edges from embed and
into logits included, so the empty edge circuit is the corrupted run. Faithfulness is
(m(C) - m(empty)) / (m(full) - m(empty)), nan when m(full) = m(empty).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import pandas as pd
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from foresight.attribution.api import as_batch
from foresight.attribution.eap import edge_index
from foresight.attribution.patching import PatchedRuns
from foresight.attribution.runner import Runner, eval_mode
from foresight.attribution.scores import Scores
from foresight.attribution.task_metrics import get_metric
from foresight.circuits import circuit, ranked_candidates
from foresight.encoding import PairBatch
from foresight.tasks.base import AttributionPair

Pairs = PairBatch | Sequence[AttributionPair]


class CircuitEvaluator:
    """Faithfulness of circuits of one model on one pair batch, from its cached clean
    and corrupted runs. Use inside `eval_mode(model)`."""

    def __init__(self, runs: PatchedRuns):
        self.runs, self.runner = runs, runs.runner
        self.graph = self.runner.graph
        self.senders = self.graph.senders()
        self.edges = self.graph.edge_labels()
        self._empty: dict[str, float] = {}

    @classmethod
    def of_batch(
        cls, model: nn.Module, batch: PairBatch, metric: str, batch_size: int | None
    ) -> CircuitEvaluator:
        """An evaluator that runs `batch` (in chunks of `batch_size`, default all at once)."""
        runner = Runner(model)
        return cls(PatchedRuns.of_batch(runner, batch, get_metric(metric), batch_size or len(batch)))

    def metric(self, circuit: Collection[str], level: str) -> float:
        """m(C): the metric with everything outside `circuit` patched."""
        inside = set(circuit)
        known = set(self.graph.node_names() if level == "node" else self.edges)
        unknown = sorted(inside - known)
        if unknown:
            raise ValueError(f"not {level}s of the graph: {', '.join(unknown[:5])}")
        if level == "node":
            return self.runs.nodes(torch.tensor([s not in inside and s != "embed" for s in self.senders]))
        patched = torch.zeros(len(self.senders), len(self.graph.receivers()), dtype=torch.bool)
        senders, receivers = edge_index(self.runner)
        outside = torch.tensor([e not in inside for e in self.edges])
        patched[senders[outside], receivers[outside]] = True
        return self.runs.edges(patched)

    def faithfulness(self, circuit: Collection[str], level: str) -> float:
        """(m(C) - m(empty)) / (m(full) - m(empty)) of `circuit` at `level` (nan when m(full) = m(empty))."""
        if level not in self._empty:
            self._empty[level] = self.metric((), level)
        empty, full = self._empty[level], self.runs.clean_value
        return float("nan") if full == empty else (self.metric(circuit, level) - empty) / (full - empty)


def _level(circuit: Collection[str], level: str | None) -> str:
    if level is not None:
        return level
    return "edge" if any("->" in c for c in circuit) else "node"


def faithfulness(
    model: nn.Module,
    pairs: Pairs,
    circuit: Collection[str],
    metric: str = "logit_diff",
    level: str | None = None,
    batch_size: int | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> float:
    """Normalized faithfulness of `circuit` (node or edge names; the level is taken
    from the names when not given, "node" for an empty circuit)."""
    batch = as_batch(model, pairs, tokenizer)
    with eval_mode(model):
        evaluator = CircuitEvaluator.of_batch(model, batch, metric, batch_size)
        return evaluator.faithfulness(circuit, _level(circuit, level))


def faithfulness_curve(
    model: nn.Module,
    pairs: Pairs,
    scores: Scores,
    ks: Sequence[int],
    batch_size: int | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> pd.DataFrame:
    """Faithfulness of the circuit of size k of `scores` for every k in `ks` (columns k,
    faithfulness); ValueError for a k outside 1..the number of candidates."""
    batch = as_batch(model, pairs, tokenizer)
    circuits = [circuit(scores, k) for k in ks]
    with eval_mode(model):
        evaluator = CircuitEvaluator.of_batch(model, batch, scores.metric, batch_size)
        values = [evaluator.faithfulness(c, scores.level) for c in circuits]
    return pd.DataFrame({"k": list(ks), "faithfulness": values})


def minimal_circuit(
    model: nn.Module,
    pairs: Pairs,
    scores: Scores,
    target: float = 0.8,
    batch_size: int | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> list[str]:
    """The smallest circuit (`circuits.circuit`, in rank order) whose faithfulness reaches
    `target`, found by bisection over k (exact when faithfulness grows with k; the result
    always reaches the target, every candidate if nothing smaller does)."""
    batch = as_batch(model, pairs, tokenizer)
    ranked = ranked_candidates(scores)
    with eval_mode(model):
        evaluator = CircuitEvaluator.of_batch(model, batch, scores.metric, batch_size)
        low, high = 0, len(ranked)
        while low < high:
            mid = (low + high) // 2
            if evaluator.faithfulness(ranked[:mid], scores.level) >= target:
                high = mid
            else:
                low = mid + 1
    return ranked[:high]
