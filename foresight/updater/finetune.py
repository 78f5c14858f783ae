"""One fine-tuning run of one update strategy: SFT restricted to the components the
strategy selects (`strategies`), with the settings of a `FinetuneConfig`.

Every strategy shares the step budget, data, lr, LoRA rank and K. The oracle's free
reference run is not counted in `wall_s`. Every `log_every` steps (and at the last
step) the run records the training loss, held-out accuracy and the Circuit Distance
(heads and MLPs) of the set in force to the current circuit (eap, K), measured before
any re-selection at that step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from transformers import PreTrainedModel, TrainerCallback

from foresight import distributed
from foresight.architectures import graph_of
from foresight.attribution import attribute
from foresight.circuit_metrics import circuit_distance
from foresight.circuits import circuit
from foresight.encoding import encode_pairs
from foresight.evaluation import accuracy
from foresight.gradients import ComponentGradients
from foresight.gradients import gradient_norms as component_gradient_norms
from foresight.metric_names import mlflow_names
from foresight.mlflow_log import SafeLogger
from foresight.models import load_model
from foresight.sft import SFTConfig, make_trainer
from foresight.tasks import Task, get_task
from foresight.updater.base import Unrestricted, Updater
from foresight.updater.config import FinetuneConfig
from foresight.updater.full import apply_gradient_masks
from foresight.updater.lora import apply_masked_lora
from foresight.updater.strategies import Context, Strategy, TaskData, checked_strategy


@dataclass
class FinetuneResult:
    """What one run did. `selections` maps a step to the set in force from the next step on
    (step 0: the initial set); `metrics` has columns step, loss, accuracy, cd_selected
    (keys of `foresight.metric_names`, logged under their MLflow names); `out_dir` holds
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


def model_node_scores(model: PreTrainedModel, data: TaskData) -> dict[str, float]:
    """Node eap scores of `model` on the run's attribution pairs."""
    return attribute(model, data.pairs, method="eap", level="node").as_dict()


class _Monitor(TrainerCallback):
    """Every `log_every` steps (and at the last): metrics; every `every` steps, for strategies
    that re-select: `strategy.reselect`, whose new set the updater takes from the next step.
    Under DDP, rank 0 measures and re-selects, and every rank takes its set (`broadcast`)."""

    def __init__(
        self, strategy: Strategy, updater: Updater, selected: set[str], logger: SafeLogger | None
    ) -> None:
        self.strategy, self.updater, self.logger = strategy, updater, logger
        self.config, self.data = strategy.context.config, strategy.context.data
        self.selected = selected
        self.rows: dict[int, dict[str, float]] = {}
        self.selections: dict[int, list[str]] = {0: sorted(selected)}

    def at_step(self, step: int, last: bool = False) -> None:
        """Log and re-select at `step` as the module docstring says."""
        c, model = self.config, self.updater.model
        log = step % c.logging_interval == 0 or last
        check = self.strategy.reselects and step % c.every == 0 and step < c.steps
        if not (log or check):
            return
        new = self._measure(step, model, log, check) if distributed.is_main() else None
        new = distributed.broadcast(new) if check else new
        if new is not None and new != self.selected:
            self.updater.set_components(new)
            self.selected = new
            self.selections[step] = sorted(new)

    def _measure(self, step: int, model: PreTrainedModel, log: bool, check: bool) -> set[str] | None:
        """Log the step's metrics (with `log`) and return the strategy's new set (with `check`)."""
        c = self.config
        cache: dict[str, dict[str, float]] = {}

        def scores() -> dict[str, float]:
            if "scores" not in cache:
                cache["scores"] = model_node_scores(model, self.data)
            return cache["scores"]

        if log:
            row = {
                "accuracy": accuracy(model, self.data.tokenizer, self.data.examples),
                "cd_selected": circuit_distance(self.selected, circuit(scores(), c.components), "all"),
            }
            self.rows.setdefault(step, {}).update(row)
            if self.logger is not None:
                task = self.data.task.name
                self.logger.log_metrics(mlflow_names({f"{task}/{k}": v for k, v in row.items()}), step)
        return self.strategy.reselect(step, model, scores) if check else None

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        self.at_step(state.global_step, last=state.global_step == state.max_steps)

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if logs and "loss" in logs and state.is_world_process_zero:
            self.rows.setdefault(state.global_step, {})["loss"] = logs["loss"]
            if self.logger is not None:
                self.logger.log_metrics(mlflow_names({"loss": logs["loss"]}), state.global_step)

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame.from_dict(self.rows, orient="index").sort_index()
        frame = frame.reindex(columns=["loss", "accuracy", "cd_selected"])
        return frame.rename_axis("step").reset_index()


def wrap(model: PreTrainedModel, selected: set[str], config: FinetuneConfig, reselects: bool) -> Updater:
    """The updater of `model` for `selected`: masked LoRA, masked full SFT, or plain SFT for
    free full. `reselects` makes every head and MLP selectable later."""
    if config.mode == "lora":
        return apply_masked_lora(model, selected, rank=config.rank, alpha=2 * config.rank, dynamic=reselects)
    if config.strategy == "free":
        return Unrestricted(model, selected)
    return apply_gradient_masks(model, selected, dynamic=reselects)


def sft_config(config: FinetuneConfig) -> SFTConfig:
    """The Trainer settings of a run."""
    return SFTConfig(
        steps=config.steps, batch_size=config.batch_size, lr=config.learning_rate,
        warmup_steps=config.steps // 10,
        examples_per_task=config.steps * config.batch_size * distributed.world_size(),
        seed=config.seed, dtype=config.dtype, device=config.device,
    )  # fmt: skip


def train(
    updater: Updater,
    data: TaskData,
    config: FinetuneConfig,
    out_dir: Path,
    callbacks: Sequence[TrainerCallback] = (),
) -> None:
    """SFT with an optimizer built here, so that the updater's post-step hook sits on the one used."""
    params = [p for p in updater.model.parameters() if p.requires_grad]
    sft = sft_config(config)
    optimizer = torch.optim.AdamW(params, lr=sft.lr, weight_decay=sft.weight_decay)
    updater.attach(optimizer)
    trainer = make_trainer(
        updater.model,
        data.tokenizer,
        [data.task],
        sft,
        out_dir,
        list(callbacks),
        optimizers=(optimizer, None),
    )
    trainer.args.logging_steps = config.logging_interval
    trainer.train()


def _reference(
    config: FinetuneConfig, data: TaskData, components: set[str] | None, out_dir: Path
) -> PreTrainedModel:
    """A run of the same budget and seed that updates `components` (None: free, every head and
    MLP): the hindsight of the oracles."""
    model, _ = load_model(config.model, config.dtype, config.device)
    reference = replace(config, strategy="free" if components is None else "static")
    torch.manual_seed(config.seed)
    selected = set(graph_of(model).member_names()) if components is None else set(components)
    updater = wrap(model, selected, reference, reselects=False)
    train(updater, data, reference, out_dir)
    return updater.model


def gradient_norms(model: PreTrainedModel, data: TaskData) -> dict[str, float]:
    """Per head and MLP, the L2 norm of the gradient of the task loss on the run's attribution
    pairs with respect to the weights it owns (`foresight.gradients.ComponentGradients`), in one
    host transfer (`foresight.gradients.gradient_norms`)."""
    return component_gradient_norms(ComponentGradients(model)(model, data.pairs))


def finetune(
    task: str | Task,
    config: FinetuneConfig,
    out_dir: str | Path = "runs/finetune",
    logger: SafeLogger | None = None,
    forecaster: Any = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> FinetuneResult:
    """Fine-tune `config.model` on `task` with `config.strategy` (see the module docstring); the
    merged model goes to `{out_dir}/model` (with `save_model`). `forecaster`: an already loaded
    forecaster for the forecasting strategies (instead of `config.forecaster`). `callbacks`: more
    Trainer callbacks (after the run's own), e.g. a `trackers.tracker.CircuitTracker`.

    Under torchrun / accelerate launch every rank trains its share of each global batch
    (`batch_size` x ranks); the trainings a strategy needs first (the oracle's free run, the
    probe of the forecasting strategies) run the same way; rank 0 evaluates, re-selects
    (its set reaches every rank) and saves, and every rank returns rank 0's result."""
    distributed.start(config.device)
    out = Path(out_dir)
    task = get_task(task) if isinstance(task, str) else task
    base, tokenizer = load_model(config.model, config.dtype, config.device)
    pairs = encode_pairs(tokenizer, task.attribution_pairs(config.n_pairs, seed=0))
    data = TaskData(task, tokenizer, pairs, task.eval_examples(config.n_eval, seed=0))
    static = circuit(model_node_scores(base, data), config.components) if distributed.is_main() else None
    static = distributed.broadcast(static)
    context = Context(
        config=config,
        graph=graph_of(base),
        data=data,
        static=static,
        out_dir=out,
        free_reference=lambda: _reference(config, data, None, out / "oracle-reference"),
        node_scores=lambda model: model_node_scores(model, data),
        forecaster=forecaster,
        masked_reference=lambda: _reference(config, data, static, out / "masked-reference"),
        gradient_norms=lambda model: gradient_norms(model, data),
    )
    strategy = checked_strategy(config.strategy, config.every, config.steps)(context)
    initial = distributed.broadcast(strategy.initial())
    accuracy_before = accuracy(base, tokenizer, data.examples) if distributed.is_main() else math.nan
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    updater = wrap(base, initial, config, strategy.reselects)
    monitor = _Monitor(strategy, updater, initial, logger)
    monitor.at_step(0)
    train(updater, data, config, out / "trainer", [monitor, *callbacks])
    wall = time.perf_counter() - start
    trainable = updater.trainable_parameters()
    net = updater.model
    trained = net.merge_and_unload() if config.mode == "lora" else net
    if not distributed.is_main():
        return distributed.broadcast(None)
    if config.save_model:
        trained.save_pretrained(out / "model")
        tokenizer.save_pretrained(out / "model")
    result = FinetuneResult(
        task=task.name,
        strategy=config.strategy,
        mode=config.mode,
        seed=config.seed,
        accuracy_before=accuracy_before,
        accuracy_after=accuracy(trained, tokenizer, data.examples),
        trainable_parameters=trainable,
        components=sorted(monitor.selected),
        selections=monitor.selections,
        wall_s=wall,
        out_dir=str(out),
        metrics=monitor.frame(),
    )
    return distributed.broadcast(result)
