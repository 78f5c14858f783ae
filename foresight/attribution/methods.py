"""Attribution methods by name: `METHODS`, a `foresight.registry.Registry` of functions
`method(runner, batch, metric, level, ig_steps, batch_size, keep_runs)` that return the scores
(graph node order for level "node", edge order for "edge", in accumulation precision), the
batch-mean clean and corrupted metric, and the pairs' clean and corrupted runs (`PatchedRuns`,
kept with `keep_runs`; else None, except for patching, which makes them anyway). Pairs are
taken `batch_size` at a time.

- eap: one corrupted forward, one clean forward and one backward per chunk;
- eap-ig: eap with `ig_steps` >= 1 interpolation steps on the embedding output;
- patching: exact, one forward per node or edge.

Light to import (the command line reads the names at start-up): a method imports its
implementation (`foresight.attribution.eap`, `foresight.attribution.patching`) when called.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from foresight.registry import Registry

if TYPE_CHECKING:
    import numpy as np

    from foresight.attribution.patching import PatchedRuns
    from foresight.attribution.runner import Runner
    from foresight.attribution.task_metrics import Metric
    from foresight.encoding import PairBatch

Result = tuple["np.ndarray", float, float, "PatchedRuns | None"]  # values, clean, corrupted, runs
Method = Callable[["Runner", "PairBatch", "Metric", str, int, int, bool], Result]
METHODS: Registry[Method] = Registry("method")


@METHODS.register("eap")
def eap(
    runner: Runner,
    batch: PairBatch,
    metric: Metric,
    level: str,
    ig_steps: int,
    batch_size: int,
    keep_runs: bool,
) -> Result:
    """Attribution patching (`ig_steps` is not used)."""
    return _gradient(runner, batch, metric, level, 0, batch_size, keep_runs)


@METHODS.register("eap-ig")
def eap_ig(
    runner: Runner,
    batch: PairBatch,
    metric: Metric,
    level: str,
    ig_steps: int,
    batch_size: int,
    keep_runs: bool,
) -> Result:
    """Attribution patching with integrated gradients over `ig_steps` steps."""
    return _gradient(runner, batch, metric, level, ig_steps, batch_size, keep_runs)


def _gradient(
    runner: Runner,
    batch: PairBatch,
    metric: Metric,
    level: str,
    ig_steps: int,
    batch_size: int,
    keep_runs: bool,
) -> Result:
    from foresight.attribution.eap import gradient_attribution
    from foresight.attribution.patching import PatchedRuns

    chunks = [] if keep_runs else None
    values, clean, corrupted = gradient_attribution(
        runner, batch, metric, level, ig_steps, batch_size, chunks
    )
    return values, clean, corrupted, PatchedRuns(runner, metric, chunks) if chunks is not None else None


@METHODS.register("patching")
def patching(
    runner: Runner,
    batch: PairBatch,
    metric: Metric,
    level: str,
    ig_steps: int,
    batch_size: int,
    keep_runs: bool,
) -> Result:
    """Exact patching (`ig_steps` is not used; the runs are kept whatever `keep_runs`)."""
    from foresight.attribution.patching import PatchedRuns, patching_attribution

    runs = PatchedRuns.of_batch(runner, batch, metric, batch_size)
    return patching_attribution(runs, level), runs.clean_value, runs.corrupted_value, runs
