"""Exact activation patching (one forward per node or edge and chunk: the slow reference).

- node n: score(n) = M(clean run with a_n replaced by a_n(corrupted)) - M(clean);
  for `logits` this is M(corrupted) - M(clean).
- edge s->r: score = M(clean run with write_s(corrupted) - write_s(clean) added to
  receiver r's input only) - M(clean).

`PatchedRuns` also evaluates a whole set of patched nodes or edges at once (what
faithfulness needs): patched nodes take their corrupted activation; a patched
edge s->r makes r read s's corrupted write in place of s's write in this run.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from foresight.attribution.eap import edge_index
from foresight.attribution.runner import ChunkRuns, EdgePatch, NodePatch, Runner
from foresight.attribution.task_metrics import Metric
from foresight.encoding import PairBatch


class PatchedRuns:
    """A pair batch with its clean and corrupted runs cached per chunk."""

    def __init__(self, runner: Runner, metric: Metric, chunks: list[ChunkRuns]):
        self.runner, self.metric, self.chunks = runner, metric, chunks
        self.n = sum(len(chunk) for chunk, _, _ in chunks)
        self.clean_value = self._mean(clean.logits for _, clean, _ in self.chunks)
        self.corrupted_value = self._mean(corr.logits for _, _, corr in self.chunks)
        self.n_senders = len(runner.graph.senders())
        self.n_receivers = len(runner.graph.receivers())

    @classmethod
    @torch.no_grad()
    def of_batch(cls, runner: Runner, batch: PairBatch, metric: Metric, batch_size: int) -> PatchedRuns:
        """Runs the clean and the corrupted prompts of `batch` in chunks of `batch_size`."""
        chunks = []
        for start in range(0, len(batch), batch_size):
            chunk = batch.slice(start, start + batch_size)
            chunks.append(
                (chunk, runner.forward(chunk.clean, chunk.last), runner.forward(chunk.corrupted, chunk.last))
            )
        return cls(runner, metric, chunks)

    def _mean(self, logits: Iterable[torch.Tensor]) -> float:
        total = 0.0
        for (chunk, clean, _), lg in zip(self.chunks, logits, strict=True):
            total += float(self.metric(lg, chunk, clean.logits).sum())
        return total / self.n

    @torch.no_grad()
    def nodes(self, patched: torch.Tensor) -> float:
        """Batch-mean metric with the senders marked in `patched` [S] bool corrupted."""
        runs = (
            self.runner.forward(chunk.clean, chunk.last, node_patch=NodePatch(corr, patched)).logits
            for chunk, _, corr in self.chunks
        )
        return self._mean(runs)

    @torch.no_grad()
    def edges(self, patched: torch.Tensor) -> float:
        """Batch-mean metric with the edges marked in `patched` [S, R] bool corrupted."""
        runs = (
            self.runner.forward(chunk.clean, chunk.last, edge_patch=EdgePatch(corr, patched)).logits
            for chunk, _, corr in self.chunks
        )
        return self._mean(runs)


def patching_attribution(runs: PatchedRuns, level: str) -> np.ndarray:
    """Exact patching scores in graph node order (level "node") or edge order."""
    if level == "node":
        scores = []
        for i in range(runs.n_senders):
            patched = torch.zeros(runs.n_senders, dtype=torch.bool)
            patched[i] = True
            scores.append(runs.nodes(patched) - runs.clean_value)
        scores.append(runs.corrupted_value - runs.clean_value)
        return np.array(scores, dtype=np.float64)
    senders, receivers = edge_index(runs.runner)
    scores = []
    for s, r in zip(senders.tolist(), receivers.tolist(), strict=True):
        patched = torch.zeros(runs.n_senders, runs.n_receivers, dtype=torch.bool)
        patched[s, r] = True
        scores.append(runs.edges(patched) - runs.clean_value)
    return np.array(scores, dtype=np.float64)
