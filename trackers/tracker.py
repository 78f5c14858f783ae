"""`CircuitTracker`: re-discovers the task circuits at checkpoints during SFT.

At every checkpoint (step 0, before any update, always included) and for
every tracked task it stores, in that task's trajectory directory:
node and edge attribution scores on a fixed batch of attribution pairs, the
per-component gradient norm of the task loss, optionally (`lookahead`) the
derivative of every node score along the last update, the task metric, held-out
accuracy, the faithfulness of the current circuit and of the step-0 circuit
on the current model, and the wall time the checkpoint cost. It logs the
step metrics (accuracy, CD/CS against step 0 and the previous checkpoint,
CC between every pair of tasks) through a `SafeLogger`.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from foresight.attribution.api import attribute_with_runs
from foresight.attribution.faithfulness import CircuitEvaluator
from foresight.attribution.lookahead import node_score_derivative
from foresight.attribution.patching import PatchedRuns
from foresight.attribution.runner import eval_mode
from foresight.circuit_metrics import circuit_conflict, circuit_distance, circuit_stability, score_stability
from foresight.circuits import circuit
from foresight.encoding import PairBatch, encode_pairs
from foresight.evaluation import accuracy
from foresight.gradients import ComponentGradients
from foresight.graph import Graph
from foresight.mlflow_log import SafeLogger
from foresight.tasks.base import Example, Task
from trackers.manifest import Manifest
from trackers.settings import TrackerSettings
from trackers.store import TrajectoryWriter, checkpoint_file, read_checkpoint, scores_table


@dataclass
class _TaskState:
    """The fixed data of one tracked task and what earlier checkpoints left behind."""

    task: Task
    pairs: PairBatch
    examples: list[Example]
    writer: TrajectoryWriter
    start_circuit: set[str] | None = None
    start_scores: pd.Series | None = None
    previous_circuit: set[str] | None = None
    previous_scores: pd.Series | None = None
    circuit: set[str] = field(default_factory=set)


def node_and_edge_scores(
    model: PreTrainedModel, pairs: PairBatch, graph: Graph, settings: TrackerSettings
) -> tuple[pd.Series, pd.Series, float, PatchedRuns]:
    """Node scores, edge scores (empty unless `settings.levels` has "edge"), the clean metric,
    and the pairs' clean and corrupted runs (for faithfulness without running them again).

    With edges tracked, one attribution pass serves both levels: a sender's node score is the
    sum of its edge scores (the identity `test_attribution` checks), and the logits node's score
    is M(corrupted) - M(clean), which is its exact value for the linear logit-difference metric."""
    s = settings
    level = "edge" if "edge" in s.levels else "node"
    scores, runs = attribute_with_runs(model, pairs, method=s.method, level=level, ig_steps=s.ig_steps)
    if level == "node":
        return pd.Series(scores.as_dict()), pd.Series(dtype=float), scores.metric_value, runs
    edges = pd.Series(scores.as_dict())
    nodes = edges.groupby(edges.index.str.split("->").str[0], sort=False).sum()
    nodes = nodes.reindex(graph.node_names())
    nodes["logits"] = scores.corrupted_value - scores.metric_value
    return nodes, edges, scores.metric_value, runs


class CircuitTracker(TrainerCallback):
    """Tracks the circuits of `tasks` during training: as a Trainer callback, or by
    calling `take_checkpoint(model, step)` from a plain PyTorch loop.

    With `background`, the Trainer callback takes each checkpoint on a copy of the model
    in a worker thread while training goes on (one checkpoint at a time, in step order;
    training waits only when the previous checkpoint is still running, and before every
    Trainer save, so a saved Trainer checkpoint never runs ahead of the trajectory)."""

    def __init__(
        self,
        tasks: Sequence[Task],
        tokenizer: PreTrainedTokenizerBase,
        graph: Graph,
        out_dir: str | Path,
        manifest: Manifest | Mapping[str, Any],
        settings: TrackerSettings = TrackerSettings(),
        logger: SafeLogger | None = None,
        resume: bool = False,
        background: bool = False,
    ):
        self.settings, self.graph, self.tokenizer = settings, graph, tokenizer
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="tracker") if background else None
        self._pending: deque[Future] = deque()
        self.gradients: ComponentGradients | None = None
        self._previous_parameters: dict[str, torch.Tensor] | None = None
        self.logger = logger
        self.out_dir = Path(out_dir)
        self.history: list[dict[str, float]] = []
        self.states: dict[str, _TaskState] = {}
        if isinstance(manifest, Manifest):
            manifest = manifest.to_dict()
        for task in tasks:
            writer = TrajectoryWriter(
                self.out_dir / task.name,
                {
                    **manifest,
                    "run_id": f"{manifest['run_id']}-{task.name}",
                    "mlflow_run_id": manifest["run_id"],
                    "task": task.name,
                    "graph": graph.to_dict(),
                    "tracker": asdict(settings),
                },
                resume=resume,
            )
            pairs = encode_pairs(tokenizer, task.attribution_pairs(settings.n_pairs, seed=settings.seed))
            examples = task.eval_examples(settings.n_eval, seed=settings.seed)
            self.states[task.name] = _TaskState(task, pairs, examples, writer)
            self._restore(self.states[task.name])

    @property
    def background(self) -> bool:
        """Whether checkpoints are taken on a model copy in a worker thread."""
        return self._worker is not None

    def _restore(self, state: _TaskState) -> None:
        """On resume, recover the start and previous circuits from the written checkpoints."""
        steps = state.writer.steps()
        if not steps:
            return
        for step, slot in ((steps[0], "start"), (steps[-1], "previous")):
            table, _ = read_checkpoint(checkpoint_file(state.writer.path, step))
            scores = table[table.level == "node"].set_index("component")["score"]
            setattr(state, f"{slot}_scores", scores)
            setattr(state, f"{slot}_circuit", circuit(scores, self.settings.circuit_size))

    def take_checkpoint(self, model: PreTrainedModel, step: int) -> None:
        """Take checkpoint `step` for every task that does not have it yet."""
        metrics: dict[str, float] = {}
        gradients: dict[str, dict[str, np.ndarray]] = {}
        pending = []
        for state in self.states.values():
            if state.writer.has(step):
                continue
            step_metrics, table, scalars = self._checkpoint(model, step, state, gradients)
            metrics.update(step_metrics)
            pending.append((state.writer, table, scalars))
        if self.settings.lookahead:
            self._previous_parameters = {
                n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad
            }
        for a, b in itertools.combinations(gradients, 2):
            cc = circuit_conflict(gradients[a], gradients[b], self.states[a].circuit, self.states[b].circuit)
            metrics[f"cc/{a}/{b}"] = cc
        if metrics:
            self.history.append({"step": step, **metrics})
        if self.logger is not None and metrics:
            self.logger.log_metrics(metrics, step)
        # written after logging: a crash in between is replayed on resume, and the
        # logger drops steps it already has, so no metric step is lost or doubled
        for writer, table, scalars in pending:
            writer.write_checkpoint(step, table, scalars)

    def metrics_frame(self, task: str) -> pd.DataFrame:
        """The step metrics of `task` observed in this process: columns step, accuracy,
        metric, faithfulness, cd_*, cs_*, and cc_{other task} for every other task."""
        rows = []
        for entry in self.history:
            row = {"step": entry["step"]}
            for key, value in entry.items():
                parts = key.split("/")
                if parts[0] == task and len(parts) == 2:
                    row[parts[1]] = value
                elif parts[0] == "cc" and task in parts[1:]:
                    row["cc_" + (parts[2] if parts[1] == task else parts[1])] = value
            rows.append(row)
        return pd.DataFrame(rows)

    def _checkpoint(
        self,
        model: PreTrainedModel,
        step: int,
        state: _TaskState,
        gradients: dict[str, dict[str, np.ndarray]],
    ) -> tuple[dict[str, float], pd.DataFrame, dict[str, float]]:
        """Scores, metrics and scalars of checkpoint `step` of one task (not yet written)."""
        s, name = self.settings, state.task.name
        start = time.perf_counter()
        node_scores, edge_scores, metric_value, runs = node_and_edge_scores(model, state.pairs, self.graph, s)
        self.gradients = self.gradients or ComponentGradients(model)
        grads = gradients[name] = self.gradients(model, state.pairs)
        current = circuit(node_scores, s.circuit_size)
        if state.start_circuit is None:
            state.start_circuit, state.start_scores = current, node_scores
        if state.previous_circuit is None:
            state.previous_circuit, state.previous_scores = current, node_scores
        scalars: dict[str, float] = {"metric": metric_value}
        step_metrics = {
            f"{name}/metric": metric_value,
            f"{name}/cs_start_spearman": score_stability(state.start_scores, node_scores),
        }
        if s.evaluate:
            evaluated, metrics = self._evaluate(model, state, runs, current)
            scalars |= evaluated
            step_metrics |= {f"{name}/{key}": value for key, value in metrics.items()}
        for kind in ("all", "head", "mlp"):
            step_metrics[f"{name}/cd_start_{kind}"] = circuit_distance(state.start_circuit, current, kind)
            step_metrics[f"{name}/cd_prev_{kind}"] = circuit_distance(state.previous_circuit, current, kind)
        state.circuit = state.previous_circuit = current
        state.previous_scores = node_scores
        grad_norms = {c: float(np.linalg.norm(g)) for c, g in grads.items()}
        all_scores = pd.concat([node_scores, edge_scores]).to_dict()
        lookahead = self._lookahead(model, state.pairs)
        scalars["wall_s"] = time.perf_counter() - start
        table = scores_table(all_scores, self.graph.n_layers, s.method, grad_norms, lookahead)
        return step_metrics, table, scalars

    def _evaluate(
        self, model: PreTrainedModel, state: _TaskState, runs: PatchedRuns, current: set[str]
    ) -> tuple[dict[str, float], dict[str, float]]:
        """The checkpoint scalars accuracy (held out), faithfulness (of the current circuit) and
        faithfulness_start_circuit, and the step metrics accuracy, faithfulness, cs_start, cs_prev."""
        circuits = (current, state.start_circuit, state.previous_circuit)
        with eval_mode(model):  # each distinct circuit once: late in SFT the three often coincide
            evaluator = CircuitEvaluator(runs)
            faith = {frozenset(c): evaluator.faithfulness(c, "node") for c in set(map(frozenset, circuits))}
        now, start, previous = (faith[frozenset(c)] for c in circuits)
        held_out = accuracy(model, self.tokenizer, state.examples)
        scalars = {"accuracy": held_out, "faithfulness": now, "faithfulness_start_circuit": start}
        metrics = {
            "accuracy": held_out,
            "faithfulness": now,
            "cs_start": circuit_stability(start, now),
            "cs_prev": circuit_stability(previous, now),
        }
        return scalars, metrics

    def _lookahead(self, model: PreTrainedModel, pairs: PairBatch) -> dict[str, float] | None:
        """Node name -> derivative of its eap score along the update since the previous
        checkpoint (None without `lookahead` or before a previous checkpoint of this process)."""
        if self._previous_parameters is None:
            return None
        params = dict(model.named_parameters())
        direction = {n: params[n].detach() - p for n, p in self._previous_parameters.items()}
        values = node_score_derivative(model, pairs, direction)
        return dict(zip(self.graph.node_names(), values.tolist(), strict=True))

    def wait(self, pending: int = 0) -> None:
        """Block until at most `pending` background jobs are left; re-raises their errors."""
        while len(self._pending) > pending:
            self._pending.popleft().result()

    def _submit(self, job: Callable[..., None], *args: Any) -> None:
        """Run `job(*args)` now, or queue it on the worker (after the jobs queued before)."""
        if self._worker is None:
            job(*args)
        else:
            self._pending.append(self._worker.submit(job, *args))

    def _take(self, model: PreTrainedModel, step: int) -> None:
        if self._worker is not None:
            self.wait(pending=0)  # at most one model copy held
            model = copy.deepcopy(model)
        self._submit(self.take_checkpoint, model, step)

    # TrainerCallback hooks
    def on_train_begin(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
        if self.settings.is_checkpoint(state.global_step):
            self._take(model, state.global_step)

    def on_step_end(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
        if self.settings.is_checkpoint(state.global_step):
            self._take(model, state.global_step)
        if control.should_save:  # set by the Trainer's flow callback, which runs first
            self.wait()

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if self.logger is not None and logs and "loss" in logs:
            self._submit(self.logger.log_metrics, {"loss": logs["loss"]}, state.global_step)

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
        self.wait()
