"""The probe fine-tune of the `anticipate` baseline: a short, low-learning-rate SFT from step 0.

Scores after the probe, minus the step-0 scores, are a finite-difference estimate of the
first-order change of attribution along the SFT update direction; `predictors.baselines.Anticipate`
extrapolates it by a factor K fitted on training tasks. Default budget: about 1% of the run's
examples at a tenth of its learning rate, no warm-up.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from foresight.architectures import graph_of
from foresight.encoding import encode_pairs
from foresight.models import load_model
from foresight.sft import SFTConfig, make_trainer
from foresight.tasks.base import Task
from trackers.store import TrajectoryWriter, scores_table
from trackers.tracker import TrackerSettings, node_and_edge_scores


def probe_config(run: SFTConfig, data_fraction: float = 0.01, lr_factor: float = 0.1) -> SFTConfig:
    """The probe's SFT settings: ceil(`data_fraction` * run steps) steps at `lr_factor` * run lr."""
    steps = max(1, math.ceil(data_fraction * run.steps))
    return replace(run, steps=steps, lr=run.lr * lr_factor, warmup_steps=0)


def write_probe(
    writer: TrajectoryWriter | None,
    model_ref: str | Path,
    task: Task,
    run: SFTConfig,
    settings: TrackerSettings,
    data_fraction: float = 0.01,
    lr_factor: float = 0.1,
) -> SFTConfig:
    """Probe-fine-tune a fresh copy of `model_ref` on `task` and write its node and edge scores
    (same pairs, method and levels as the tracker's) as the trajectory's probe; returns the
    probe's SFT settings. Without a `writer` (a rank other than 0 of a distributed run, which
    trains its share of the probe's batches) it only trains."""
    config = probe_config(run, data_fraction, lr_factor)
    model, tokenizer = load_model(model_ref, run.dtype, run.device)
    torch.manual_seed(config.seed)
    with tempfile.TemporaryDirectory() as tmp:
        make_trainer(model, tokenizer, [task], config, tmp).train()
    if writer is None:
        return config
    graph = graph_of(model)
    pairs = encode_pairs(tokenizer, task.attribution_pairs(settings.n_pairs, seed=settings.seed))
    nodes, edges, metric, _ = node_and_edge_scores(model, pairs, graph, settings)
    table = scores_table({**nodes.to_dict(), **edges.to_dict()}, graph.n_layers, settings.method)
    writer.write_probe(table, {"metric": metric, "probe_steps": config.steps, "probe_lr": config.lr})
    return config
