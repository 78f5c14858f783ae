"""`attribute`: node or edge attribution scores of a model on attribution pairs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from foresight.attribution.methods import METHODS, Request
from foresight.attribution.patching import PatchedRuns
from foresight.attribution.runner import Runner, eval_mode, input_device
from foresight.attribution.scores import Scores
from foresight.attribution.task_metrics import get_metric
from foresight.config import LEVELS
from foresight.encoding import PairBatch, encode_pairs
from foresight.tasks.base import AttributionPair


def as_batch(
    model: nn.Module,
    pairs: PairBatch | Sequence[AttributionPair],
    tokenizer: PreTrainedTokenizerBase | None,
) -> PairBatch:
    """The pairs encoded (if needed) and moved to the model's input device."""
    if not isinstance(pairs, PairBatch):
        if tokenizer is None:
            raise ValueError("attribution pairs given as text need a tokenizer")
        pairs = encode_pairs(tokenizer, pairs)
    if len(pairs) == 0:
        raise ValueError("no attribution pairs")
    return pairs.to(input_device(model))


def attribute(
    model: nn.Module,
    pairs: PairBatch | Sequence[AttributionPair],
    method: str = "eap",
    level: str = "node",
    metric: str = "logit_diff",
    ig_steps: int = 5,
    batch_size: int | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> Scores:
    """Scores of every node (graph node order) or edge (graph edge order) of `model`.

    method: a name in `foresight.attribution.methods.METHODS`: "eap" (one corrupted forward,
    one clean forward and one backward per chunk), "eap-ig" (`ig_steps` interpolation steps
    on the embedding output) or "patching" (exact, one forward per node or edge). Score
    sign: metric(c patched to corrupted) - metric(clean), to first order for eap.
    `batch_size` chunks the pairs (default: all at once). The model is left as found: it runs in eval mode
    and its training flags are restored, hooks are removed, parameter gradients are
    never touched (gradients are taken with torch.autograd.grad at activations).
    """
    batch = as_batch(model, pairs, tokenizer)
    return _attribute(model, batch, method, level, metric, ig_steps, batch_size, keep_runs=False)[0]


def attribute_with_runs(
    model: nn.Module,
    batch: PairBatch,
    method: str = "eap",
    level: str = "node",
    metric: str = "logit_diff",
    ig_steps: int = 5,
    batch_size: int | None = None,
) -> tuple[Scores, PatchedRuns]:
    """`attribute`, and the clean and corrupted runs of the pairs it made, kept for
    circuit faithfulness on the same pairs (`CircuitEvaluator(runs)`) without running
    them again."""
    batch = as_batch(model, batch, None)
    return _attribute(model, batch, method, level, metric, ig_steps, batch_size, keep_runs=True)


def _attribute(
    model: nn.Module,
    batch: PairBatch,
    method: str,
    level: str,
    metric: str,
    ig_steps: int,
    batch_size: int | None,
    keep_runs: bool,
) -> tuple[Scores, PatchedRuns | None]:
    run = METHODS.get(method)
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r} (known: {', '.join(LEVELS)})")
    if method == "eap-ig" and ig_steps < 1:
        raise ValueError(f"eap-ig needs ig_steps >= 1, got {ig_steps}")
    metric_fn = get_metric(metric)
    runner = Runner(model)
    with eval_mode(model):
        request = Request(runner, batch, metric_fn, level, ig_steps, batch_size or len(batch), keep_runs)
        values, clean, corrupted, runs = run(request)
    dtype = torch.promote_types(model.get_input_embeddings().weight.dtype, torch.float32)
    values = torch.from_numpy(values).to(dtype).numpy()
    graph = runner.graph
    names = graph.node_names() if level == "node" else graph.edge_labels()
    return Scores(graph, level, method, metric, names, values, clean, corrupted), runs
