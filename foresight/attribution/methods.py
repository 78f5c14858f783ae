"""Attribution methods by name: `METHODS`, a `foresight.registry.Registry` of functions of a
`Request` (one pass: a runner, the pairs, the metric, the level, ...) that return the scores
(graph node order for level "node", edge order for "edge", in accumulation precision), the
batch-mean clean and corrupted metric, and the pairs' clean and corrupted runs (`PatchedRuns`,
kept with `keep_runs`; else None, except for patching, which makes them anyway).

- eap: one corrupted forward, one clean forward and one backward per chunk;
- eap-ig: eap with `ig_steps` >= 1 interpolation steps on the embedding output;
- patching: exact, one forward per node or edge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from foresight.attribution.eap import gradient_attribution
from foresight.attribution.patching import PatchedRuns, patching_attribution
from foresight.attribution.runner import Runner
from foresight.attribution.task_metrics import Metric
from foresight.encoding import PairBatch
from foresight.registry import Registry


@dataclass(frozen=True)
class Request:
    """One attribution pass: `runner` (the model), `batch` (the pairs, taken `batch_size` at a
    time), `metric`, `level` ("node" or "edge"), `ig_steps` (eap-ig) and `keep_runs`."""

    runner: Runner
    batch: PairBatch
    metric: Metric
    level: str
    ig_steps: int
    batch_size: int
    keep_runs: bool


Result = tuple[np.ndarray, float, float, PatchedRuns | None]  # values, clean, corrupted, runs
METHODS: Registry[Callable[[Request], Result]] = Registry("method")


@METHODS.register("eap")
def eap(r: Request) -> Result:
    """Attribution patching (`ig_steps` is not used)."""
    return _gradient(r, 0)


@METHODS.register("eap-ig")
def eap_ig(r: Request) -> Result:
    """Attribution patching with integrated gradients over `ig_steps` steps."""
    return _gradient(r, r.ig_steps)


def _gradient(r: Request, ig_steps: int) -> Result:
    chunks = [] if r.keep_runs else None
    values, clean, corrupted = gradient_attribution(
        r.runner, r.batch, r.metric, r.level, ig_steps, r.batch_size, chunks
    )
    return values, clean, corrupted, PatchedRuns(r.runner, r.metric, chunks) if chunks is not None else None


@METHODS.register("patching")
def patching(r: Request) -> Result:
    """Exact patching (`ig_steps` is not used; the runs are kept whatever `keep_runs`)."""
    runs = PatchedRuns.of_batch(r.runner, r.batch, r.metric, r.batch_size)
    return patching_attribution(runs, r.level), runs.clean_value, runs.corrupted_value, runs
