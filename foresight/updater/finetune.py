"""One fine-tuning run of one update strategy: SFT restricted to the components a strategy selects.

Every strategy shares the step budget, data, lr, LoRA rank and K (the number of heads and MLPs
selected; `free` ignores K). Strategies:

- free: every head and MLP (mode "full": plain full-parameter SFT, embeddings and norms included);
- static: the top-K by |eap score| at step 0 (the old map);
- random: as many heads and MLPs as static, drawn with the seed;
- oracle: the top-K at the end of a free run of the same budget and seed (the hindsight bound;
  the reference run's time is not counted in `wall_s`);
- dynamic: static at step 0, then the eap top-K of the current model every `every` steps;
- predictive: the probe fine-tune of `trackers.probe` (for forecasters that use probe features),
  then warm-up with the static set while the trajectory is tracked (node eap scores at
  steps 0, every, 2 * every, ...); after `warmup_checkpoints` checkpoints the forecaster predicts
  the circuit and the set switches to its top-K for the remaining steps. The warm-up steps count
  in the shared budget. The forecaster should have been trained on trajectories tracked with the
  same spacing (`every`): its horizon is counted in checkpoints;
- predictive-dynamic: as predictive, then re-forecast from the whole trajectory so far at every
  later checkpoint.

Every `log_every` steps (default `every`; and at the last step) the run records the training loss,
held-out accuracy and the Circuit Distance (heads and MLPs) of the set in force to the current
circuit (eap top-K on the current model), measured before any re-selection at that step. A
re-selection at step s takes effect from step s + 1.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from foresight.attribution import Graph, attribute
from foresight.encoding import PairBatch, encode_pairs
from foresight.evaluation import accuracy
from foresight.metrics import circuit_distance
from foresight.mlflow_log import SafeLogger
from foresight.models import load_model
from foresight.sft import SFTConfig, make_trainer
from foresight.tasks import Task, get_task
from foresight.tasks.base import Example
from foresight.updater.full import FullMask, apply_gradient_masks
from foresight.updater.lora import MaskedLoRA, apply_masked_lora
from foresight.updater.strategies import kind_counts, select_free, select_from_scores, select_random
from predictors.base import Forecaster
from predictors.persist import load_forecaster
from predictors.problem import observe, split_runs
from trackers.probe import write_probe
from trackers.store import TrajectoryWriter, load_probe, load_trajectory, scores_table
from trackers.tracker import TrackerSettings

STRATEGIES = ("free", "static", "random", "predictive", "oracle", "dynamic", "predictive-dynamic")
RESELECTING = ("dynamic", "predictive", "predictive-dynamic")
FORECASTING = ("predictive", "predictive-dynamic")
Mode = Literal["lora", "full"]
DEFAULT_LR: dict[str, float] = {"lora": 5e-3, "full": 1e-3}
Updater = MaskedLoRA | FullMask | None


@dataclass
class FinetuneResult:
    """What one run did. `selections` maps a step to the set in force from the next step on
    (step 0: the initial set); `metrics` has columns step, loss, accuracy, cd; `out_dir` holds
    `model` (the merged fine-tuned model, if saved) and, for predictive runs, `trajectory`."""

    task: str
    strategy: str
    mode: str
    seed: int
    accuracy_before: float
    accuracy_after: float
    trainable_parameters: int
    components: list[str]
    selections: dict[int, list[str]]
    wall_s: float
    out_dir: str
    metrics: pd.DataFrame = field(repr=False)

    def summary(self) -> dict[str, object]:
        """The scalar fields (no selections or metrics)."""
        return {k: v for k, v in asdict(self).items() if k not in ("selections", "metrics")}


@dataclass
class _Data:
    task: Task
    tokenizer: PreTrainedTokenizerBase
    pairs: PairBatch
    examples: list[Example]


def _scores(model: PreTrainedModel, data: _Data) -> dict[str, float]:
    return attribute(model, data.pairs, method="eap", level="node").as_dict()


class _Monitor(TrainerCallback):
    """Every `log_every` steps (and at the last): metrics; every `every` steps, for reselecting
    strategies: `reselect(step, scores)` -> new set or None."""

    def __init__(
        self,
        model: PreTrainedModel,
        updater: Updater,
        data: _Data,
        k: int,
        every: int,
        log_every: int,
        selected: set[str],
        reselect: Callable[[int, dict[str, float]], set[str] | None] | None,
        logger: SafeLogger | None,
    ) -> None:
        self.model, self.updater, self.data, self.k = model, updater, data, k
        self.every, self.log_every = every, log_every
        self.selected, self.reselect, self.logger = selected, reselect, logger
        self.rows: dict[int, dict[str, float]] = {}
        self.selections: dict[int, list[str]] = {0: sorted(selected)}

    def observe(self, step: int, last: bool = False) -> None:
        log = step % self.log_every == 0 or last
        check = self.reselect is not None and step % self.every == 0
        if not (log or check):
            return
        scores = _scores(self.model, self.data)
        if log:
            row = {
                "accuracy": accuracy(self.model, self.data.tokenizer, self.data.examples),
                "cd": circuit_distance(self.selected, select_from_scores(scores, self.k), "all"),
            }
            self.rows.setdefault(step, {}).update(row)
            if self.logger is not None:
                self.logger.log_metrics(row, step)
        new = self.reselect(step, scores) if check else None
        if new is not None and new != self.selected:
            self.updater.set_components(new)  # type: ignore[union-attr] (reselecting strategies have one)
            self.selected = new
            self.selections[step] = sorted(new)

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        self.observe(state.global_step, last=state.global_step == state.max_steps)

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if logs and "loss" in logs:
            self.rows.setdefault(state.global_step, {})["loss"] = logs["loss"]
            if self.logger is not None:
                self.logger.log_metrics({"loss": logs["loss"]}, state.global_step)

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame.from_dict(self.rows, orient="index").sort_index()
        frame = frame.reindex(columns=["loss", "accuracy", "cd"])
        return frame.rename_axis("step").reset_index()


class _Forecasts:
    """The warm-up trajectory (node eap scores at every checkpoint) and forecasts from it."""

    def __init__(
        self, forecaster: Forecaster, path: Path, manifest: dict, n_layers: int, k: int, n_planned: int
    ) -> None:
        self.forecaster, self.path, self.n_layers, self.k = forecaster, path, n_layers, k
        self.n_planned = n_planned
        self.writer = TrajectoryWriter(path, manifest)

    def record(self, step: int, scores: dict[str, float]) -> None:
        self.writer.write_checkpoint(step, scores_table(scores, self.n_layers, "eap"), {})

    def select(self) -> set[str]:
        """The top-K heads and MLPs of the forecast from every checkpoint recorded so far."""
        rows = load_trajectory(self.path)
        probe = load_probe(self.path)
        (run,) = split_runs(rows, None if probe is None else {str(rows["run"].iloc[0]): probe})
        prefix = run.n_checkpoints - 1
        obs = observe(run, self.forecaster.problem, prefix, max(self.n_planned, run.n_checkpoints))
        return select_from_scores(self.forecaster.predict(obs).to_dict(), self.k)


def _wrap(model: PreTrainedModel, selected: set[str], mode: Mode, rank: int, dynamic: bool, free: bool):
    """(model to train, updater): masked LoRA or masked full SFT; plain SFT for free full."""
    if mode == "lora":
        lora = apply_masked_lora(model, selected, rank=rank, alpha=2 * rank, dynamic=dynamic)
        return lora.model, lora
    if mode == "full":
        return (model, None) if free else (model, apply_gradient_masks(model, selected, dynamic=dynamic))
    raise ValueError(f"mode must be 'lora' or 'full', not {mode!r}")


def _train(
    model: PreTrainedModel,
    updater: Updater,
    data: _Data,
    monitor: _Monitor | None,
    config: SFTConfig,
    out_dir: Path,
) -> None:
    """SFT with an optimizer built here, so that the updater's post-step hook sits on the one used."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if updater is not None:
        updater.attach(optimizer)
    callbacks = [monitor] if monitor is not None else []
    trainer = make_trainer(
        model, data.tokenizer, [data.task], config, out_dir, callbacks, optimizers=(optimizer, None)
    )
    if monitor is not None:
        trainer.args.logging_steps = monitor.log_every
    trainer.train()


def _trainable(model: PreTrainedModel, updater: Updater) -> int:
    if updater is not None:
        return updater.trainable_parameters()
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _oracle(model_ref: str | Path, data: _Data, k: int, mode: Mode, rank: int, seed: int, config, out):
    """The top-K at the end of a free run of the same budget and seed."""
    model, _ = load_model(model_ref)
    torch.manual_seed(seed)
    net, updater = _wrap(model, select_free(Graph.from_model(model).node_names()), mode, rank, False, True)
    _train(net, updater, data, None, config, out)
    return select_from_scores(_scores(net, data), k)


def finetune(
    task: str | Task,
    strategy: str,
    model: str | Path = "default",
    components: int = 8,
    mode: Mode = "lora",
    steps: int = 100,
    lr: float | None = None,
    batch_size: int = 32,
    rank: int = 8,
    seed: int = 0,
    forecaster: Forecaster | str | Path | None = None,
    warmup_checkpoints: int | None = None,
    every: int = 10,
    log_every: int | None = None,
    out_dir: str | Path = "runs/finetune",
    logger: SafeLogger | None = None,
    n_pairs: int = 32,
    n_eval: int = 200,
    save_model: bool = True,
) -> FinetuneResult:
    """Fine-tune `model` on `task` with `strategy` (see the module docstring); the merged model
    goes to `{out_dir}/model` (with `save_model`), the predictive warm-up trajectory to
    `{out_dir}/trajectory`. Held-out examples and attribution pairs use data seed 0, so every
    seed and strategy is scored on the same examples; `seed` drives data order, LoRA init and
    the random draw. `warmup_checkpoints` defaults to the forecaster's prefix + 1. `lr` defaults
    to `DEFAULT_LR[mode]` (LoRA needs a larger one: at 1e-3, 160 free LoRA steps leave ioi at
    chance on the default model; at 5e-3 they solve it)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if mode not in DEFAULT_LR:
        raise ValueError(f"mode must be 'lora' or 'full', not {mode!r}")
    if steps < 1 or every < 1 or (log_every is not None and log_every < 1):
        raise ValueError(f"steps ({steps}), every ({every}) and log_every ({log_every}) must be >= 1")
    out = Path(out_dir)
    task = get_task(task) if isinstance(task, str) else task
    base, tokenizer = load_model(model)
    pairs = encode_pairs(tokenizer, task.attribution_pairs(n_pairs, seed=0))
    data = _Data(task, tokenizer, pairs, task.eval_examples(n_eval, seed=0))
    lr = DEFAULT_LR[mode] if lr is None else lr
    config = SFTConfig(
        steps=steps, batch_size=batch_size, lr=lr, warmup_steps=steps // 10,
        examples_per_task=steps * batch_size, seed=seed,
    )  # fmt: skip
    graph = Graph.from_model(base)
    everything = select_free(graph.node_names())
    static = select_from_scores(_scores(base, data), components)
    initial = {
        "free": lambda: everything,
        "random": lambda: select_random(everything, *kind_counts(static), seed=seed),
        "oracle": lambda: _oracle(
            model, data, components, mode, rank, seed, config, out / "oracle-reference"
        ),
    }.get(strategy, lambda: static)()
    manifest = {"run_id": f"{task.name}-{strategy}-s{seed}", "graph": graph.to_dict(), "model": str(model)}
    manifest |= {"task": task.name, "seed": seed, "strategy": strategy}
    forecasts = None
    if strategy in FORECASTING:
        forecasts = _forecasts(
            forecaster, strategy, out / "trajectory", manifest, components, steps // every + 1
        )
        probe_settings = TrackerSettings(levels=("node",), n_pairs=n_pairs, seed=0)
        write_probe(forecasts.writer, model, task, config, probe_settings)
    reselect = _reselector(strategy, forecasts, warmup_checkpoints, every, steps, components)
    accuracy_before = accuracy(base, tokenizer, data.examples)
    start = time.perf_counter()
    torch.manual_seed(seed)
    net, updater = _wrap(base, initial, mode, rank, strategy in RESELECTING, strategy == "free")
    log_every = log_every or every
    monitor = _Monitor(net, updater, data, components, every, log_every, initial, reselect, logger)
    monitor.observe(0)
    _train(net, updater, data, monitor, config, out / "trainer")
    wall = time.perf_counter() - start
    trainable = _trainable(net, updater)
    trained = net.merge_and_unload() if mode == "lora" else net
    if save_model:
        trained.save_pretrained(out / "model")
        tokenizer.save_pretrained(out / "model")
    return FinetuneResult(
        task=task.name,
        strategy=strategy,
        mode=mode,
        seed=seed,
        accuracy_before=accuracy_before,
        accuracy_after=accuracy(trained, tokenizer, data.examples),
        trainable_parameters=trainable,
        components=sorted(monitor.selected),
        selections=monitor.selections,
        wall_s=wall,
        out_dir=str(out),
        metrics=monitor.frame(),
    )


def _forecasts(
    forecaster: Forecaster | str | Path | None,
    strategy: str,
    path: Path,
    manifest: dict,
    k: int,
    n_planned: int,
) -> _Forecasts:
    if forecaster is None:
        raise ValueError(f"strategy {strategy!r} needs a forecaster")
    forecaster = forecaster if isinstance(forecaster, Forecaster) else load_forecaster(forecaster)
    return _Forecasts(forecaster, path, manifest, manifest["graph"]["n_layers"], k, n_planned)


def _reselector(
    strategy: str,
    forecasts: _Forecasts | None,
    warmup_checkpoints: int | None,
    every: int,
    steps: int,
    k: int,
) -> Callable[[int, dict[str, float]], set[str] | None] | None:
    """The strategy's re-selection rule, called every `every` steps with the current scores
    (None for strategies that keep their initial set)."""
    if strategy == "dynamic":
        return lambda step, scores: (
            select_from_scores(scores, k) if step % every == 0 and step < steps else None
        )
    if forecasts is None:
        return None
    warmup = forecasts.forecaster.problem.prefix + 1 if warmup_checkpoints is None else warmup_checkpoints
    switch = (warmup - 1) * every
    if warmup < 1 or switch >= steps:
        raise ValueError(
            f"a warm-up of {warmup} checkpoints every {every} steps leaves none of {steps} steps"
        )

    def reselect(step: int, scores: dict[str, float]) -> set[str] | None:
        if step % every or step >= steps or (strategy == "predictive" and step > switch):
            return None
        forecasts.record(step, scores)
        return forecasts.select() if step >= switch else None

    return reselect
