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
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from foresight.architectures import base_model, graph_of
from foresight.attribution.api import attribute_with_runs
from foresight.attribution.faithfulness import CircuitEvaluator
from foresight.attribution.lookahead import node_score_derivative
from foresight.attribution.patching import PatchedRuns
from foresight.attribution.runner import eval_mode
from foresight.circuit_metrics import (
    circuit_conflict_of_dots,
    circuit_distance,
    circuit_stability,
    score_stability,
)
from foresight.circuits import circuit
from foresight.encoding import PairBatch, encode_pairs
from foresight.evaluation import accuracy
from foresight.gradients import ComponentGradients, gradient_dots, gradient_norms
from foresight.graph import Graph
from foresight.mlflow_log import SafeLogger, open_run
from foresight.mlflow_ui import TrackedRunLogger
from foresight.noise_floor import noise_floor
from foresight.tasks import JsonlTask, get_task
from foresight.tasks.base import Example, Task
from trackers.background import SerialJobs
from trackers.manifest import Manifest
from trackers.mib_log import mib_metrics, mib_table, write_mib_table
from trackers.settings import TrackerSettings
from trackers.store import TrajectoryWriter, checkpoint_file, read_checkpoint, scores_table

log = logging.getLogger(__name__)


EXPERIMENT = "foresight-track"  # the MLflow experiment of tracked runs


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
    floor: dict[str, float] | None = None


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

    Per checkpoint, the per-component gradient norms, the gradient dot products of each task
    pair (Circuit Conflict) and the scores each come to the host in one transfer.
    As a Trainer callback, the trajectory files and MLflow metrics are written by a writer
    thread, in step order, while training goes on (at most one checkpoint's writes queued
    behind the one being written); the Trainer waits for them before every Trainer save and
    at the end of training, so a saved Trainer checkpoint never runs ahead of the
    trajectory, and `wait` re-raises a failed write. `take_checkpoint` returns with its
    checkpoint written. With `background`, the Trainer callback also takes each checkpoint
    on a copy of the model in a worker thread while training goes on (one checkpoint at a
    time, in step order; training waits only when the previous checkpoint is still
    running)."""

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
        self._worker = SerialJobs("tracker") if background else None
        self._writes = SerialJobs("tracker-writes")
        self.gradients: ComponentGradients | None = None
        self._previous_parameters: dict[str, torch.Tensor] | None = None
        self.logger = logger
        self.mlflow_experiment: str | None = None  # set by `for_model`: attach a run at train begin
        self._own_run = False
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

    @classmethod
    def for_model(
        cls,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        tasks: Sequence[str | Task],
        out: str | Path,
        every: int = 10,
        run_id: str | None = None,
        resume: bool = False,
        background: bool = False,
        mlflow: bool = True,
        **settings: Any,
    ) -> CircuitTracker:
        """A tracker of `model` (a Hugging Face causal LM, or its PEFT model) as a callback of the
        caller's own Trainer (transformers `Trainer`, TRL `SFTTrainer`, full or LoRA fine-tuning).

        `tasks` are built-in task names, .jsonl task files (checked against `tokenizer`) or
        Tasks; the graph comes from the model; settings are `TrackerSettings(every=every,
        **settings)`; the trajectories go to `{out}/trajectories/{task}` with the run id `run_id`
        (default: the name of `out`) and the regime lora (a PEFT model) or full. With `mlflow`,
        at train begin it logs to the MLflow run then active (the Trainer's own, under
        `report_to="mlflow"`), or else opens a run of its own in experiment `foresight-track`
        (ended at train end); at train end the trajectories go to that run's artifacts."""
        out = Path(out)
        config = base_model(model).config
        name = getattr(config, "_name_or_path", "") or config.model_type
        task_objects = [t if isinstance(t, Task) else get_task(str(t)) for t in tasks]
        for task in task_objects:
            if isinstance(task, JsonlTask):
                task.validate(tokenizer, model=name)
        tracker_settings = TrackerSettings(every=every, **settings)
        mode = "lora" if hasattr(model, "peft_config") else "full"
        regime = {"mode": mode, "strategy": "free", "lr": None}
        manifest = Manifest(run_id or out.resolve().name, name, tracker_settings.seed, "free", regime=regime)
        tracker = cls(
            task_objects, tokenizer, graph_of(model), out / "trajectories", manifest, tracker_settings,
            resume=resume, background=background,
        )  # fmt: skip
        tracker.mlflow_experiment = EXPERIMENT if mlflow else None
        return tracker

    def _attach_mlflow(self, run_name: str) -> None:
        """Log from now on to the active MLflow run, or to a new run of `mlflow_experiment`."""
        import mlflow

        active = mlflow.active_run()
        if active is None:
            run_id, self._own_run = open_run(self.mlflow_experiment, run_name), True
        else:
            run_id = active.info.run_id
        self.logger = TrackedRunLogger(run_id, self.out_dir.parent)
        tags = {"foresight.trajectories": str(self.out_dir.resolve())}
        tags["foresight.run_id"] = next(iter(self.states.values())).writer.manifest["mlflow_run_id"]
        self.logger.set_tags(tags)

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
            table, scalars = read_checkpoint(checkpoint_file(state.writer.path, step))
            if slot == "start" and "cd_floor_p95_all" in scalars:
                state.floor = {k: v for k, v in scalars.items() if "_floor_" in k}
            scores = table[table.level == "node"].set_index("component")["score"]
            setattr(state, f"{slot}_scores", scores)
            setattr(state, f"{slot}_circuit", circuit(scores, self.settings.circuit_size))

    def take_checkpoint(self, model: PreTrainedModel, step: int) -> None:
        """Take checkpoint `step` for every task that does not have it yet; returns when it
        is written and logged."""
        self._checkpoint_and_queue(model, step)
        self._writes.wait()

    def _checkpoint_and_queue(self, model: PreTrainedModel, step: int) -> None:
        """Take checkpoint `step` and queue its logging and files on the writer thread."""
        metrics: dict[str, float] = {}
        gradients: dict[str, tuple[dict[str, torch.Tensor], dict[str, float]]] = {}
        pending = []
        for state in self.states.values():
            if state.writer.has(step):
                continue
            step_metrics, table, scalars, mib = self._checkpoint(model, step, state, gradients)
            metrics.update(step_metrics)
            pending.append((state, table, scalars, mib))
        if self.settings.lookahead:
            self._previous_parameters = {
                n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad
            }
        for task, (_, norms) in gradients.items() if len(gradients) > 1 else ():
            bad = next((c for c, norm in norms.items() if not np.isfinite(norm)), None)
            if bad is not None:  # Circuit Conflict is undefined
                raise ValueError(f"task {task}: non-finite gradient for component {bad!r}")
        for a, b in itertools.combinations(gradients, 2):
            ca, cb = self.states[a].circuit, self.states[b].circuit
            dots = gradient_dots(gradients[a][0], gradients[b][0], ca & cb)
            metrics[f"cc/{a}/{b}"] = circuit_conflict_of_dots(dots, ca, cb)
        if metrics:
            self.history.append({"step": step, **metrics})
        self._writes.wait(pending=1)  # bounds what a crash can lose: re-taken on resume
        self._writes.submit(self._write, step, metrics, pending)

    def _write(self, step: int, metrics: dict[str, float], pending: list) -> None:
        """Log a checkpoint's metrics, then write its files (on the writer thread): the MIB
        table first, the checkpoint file, by which a resumed run knows the step is done, last."""
        if self.logger is not None and metrics:
            self.logger.log_metrics(metrics, step)
        # written after logging: a crash in between is replayed on resume, and the
        # logger drops steps it already has, so no metric step is lost or doubled
        for state, table, scalars, mib in pending:
            if mib is not None:
                write_mib_table(self.logger, mib, state.writer.path, state.task.name, step)
            state.writer.write_checkpoint(step, table, scalars)

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
        gradients: dict[str, tuple[dict[str, torch.Tensor], dict[str, float]]],
    ) -> tuple[dict[str, float], pd.DataFrame, dict[str, float], pd.DataFrame | None]:
        """Metrics, scores table, scalars and MIB table (with `settings.mib`) of checkpoint `step`
        of one task (not yet written); its component gradients (on the device) and their norms
        go to `gradients[task]`."""
        s, name = self.settings, state.task.name
        start = time.perf_counter()
        node_scores, edge_scores, metric_value, runs = node_and_edge_scores(model, state.pairs, self.graph, s)
        self.gradients = self.gradients or ComponentGradients(model)
        grads = self.gradients(model, state.pairs)
        current = circuit(node_scores, s.circuit_size)
        scalars: dict[str, float] = {"metric": metric_value}
        if state.start_circuit is None:
            state.start_circuit, state.start_scores = current, node_scores
            if s.noise_floor:
                floor = noise_floor(
                    model, state.pairs, s.circuit_size, s.noise_floor, s.seed, s.method, s.ig_steps
                )
                state.floor = floor.summary()
                scalars |= state.floor
        if state.previous_circuit is None:
            state.previous_circuit, state.previous_scores = current, node_scores
        step_metrics = {
            f"{name}/metric": metric_value,
            f"{name}/cs_start_spearman": score_stability(state.start_scores, node_scores),
        }
        if "cd_floor_p95_all" in scalars:  # computed at this checkpoint
            step_metrics |= {f"{name}/{key}": value for key, value in scalars.items() if "_floor_" in key}
        if s.evaluate:
            evaluated, metrics = self._evaluate(model, state, runs, current)
            scalars |= evaluated
            step_metrics |= {f"{name}/{key}": value for key, value in metrics.items()}
        mib = None
        if s.mib:
            mib = mib_table(model, runs, {"node": node_scores, "edge": edge_scores}, s.method)
            step_metrics |= mib_metrics(mib, name)
        for kind in ("all", "head", "mlp"):
            step_metrics[f"{name}/cd_start_{kind}"] = circuit_distance(state.start_circuit, current, kind)
            step_metrics[f"{name}/cd_prev_{kind}"] = circuit_distance(state.previous_circuit, current, kind)
            if state.floor is not None:
                above = step_metrics[f"{name}/cd_start_{kind}"] > state.floor[f"cd_floor_p95_{kind}"]
                step_metrics[f"{name}/migrated_{kind}"] = float(above)
        state.circuit = state.previous_circuit = current
        state.previous_scores = node_scores
        grad_norms = gradient_norms(grads)
        gradients[name] = grads, grad_norms
        all_scores = pd.concat([node_scores, edge_scores]).to_dict()
        lookahead = self._lookahead(model, state.pairs)
        scalars["wall_s"] = time.perf_counter() - start
        table = scores_table(all_scores, self.graph.n_layers, s.method, grad_norms, lookahead)
        return step_metrics, table, scalars, mib

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

    def wait(self) -> None:
        """Block until every checkpoint taken is written and logged; re-raises the errors
        of the background jobs."""
        if self._worker is not None:
            self._worker.wait()
        self._writes.wait()

    def drain(self) -> None:
        """`wait`, for when training failed: what was taken is written; a background error is
        logged, not raised (the training error goes on)."""
        try:
            self.wait()
        except Exception:
            log.exception("tracker: a checkpoint was not written")

    def _submit(self, job: Callable[..., None], *args: Any) -> None:
        """Run `job(*args)` now, or queue it on the worker (after the jobs queued before)."""
        if self._worker is None:
            job(*args)
        else:
            self._worker.submit(job, *args)

    def _take(self, model: PreTrainedModel, step: int) -> None:
        if self._worker is not None:
            self._worker.wait()  # at most one model copy held
            model = copy.deepcopy(model)
        self._submit(self._checkpoint_and_queue, model, step)

    # TrainerCallback hooks
    def on_train_begin(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
        if self.mlflow_experiment is not None and self.logger is None and state.is_world_process_zero:
            self._attach_mlflow(self.out_dir.parent.name)
        if self.settings.is_checkpoint(state.global_step):
            self._take(model, state.global_step)

    def on_step_end(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
        if self.settings.is_checkpoint(state.global_step):
            self._take(model, state.global_step)
        if control.should_save:  # set by the Trainer's flow callback, which runs first
            self.wait()

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if self.logger is not None and logs and "loss" in logs:
            loss = {"loss": logs["loss"]}
            self._submit(self._writes.submit, self.logger.log_metrics, loss, state.global_step)

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
        self.wait()
        if self.mlflow_experiment is not None and self.logger is not None:
            self.logger.log_artifact(self.out_dir, "trajectories")
            if self._own_run:
                self.logger.end_run("FINISHED")
