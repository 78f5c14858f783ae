"""The forecasting update strategies: `predictive` and `predictive-dynamic`, registered
(`foresight.updater.strategies.register_strategy`) when this module is imported.

Both start from the static circuit and observe the model through `CircuitTracker`
with the corpus's settings (`trackers.tracker.CORPUS_SETTINGS`: node scores, gradient
norms and look-ahead derivatives at every checkpoint, edge scores when the forecaster
uses them, and the probe fine-tune of `trackers.probe` with the run's SFT settings),
at steps 0, every, 2 * every, ..., less what no feature reads: held-out accuracy and
faithfulness (`evaluate` off), and the look-ahead when the forecaster does not read it
(`Forecaster.needs_lookahead`). Each forecast reads the checkpoint just written and
appends it to the ones read before. The trajectory is labelled with the regime it
observes: masked `mode` training under the static set at the run's lr, as the
corpus's static runs (`trackers.run.track_finetune`) are.
At the switch step (checkpoint `warmup_checkpoints - 1`, default the forecaster's
prefix) the forecaster predicts the circuit from the trajectory so far and the set
becomes its top-K heads and MLPs; `predictive-dynamic` re-forecasts at every later
checkpoint. The warm-up steps count in the shared budget. The forecaster should have
been trained on trajectories tracked with the same spacing (`every`): its horizon is
counted in checkpoints. The trajectory is written to `{out_dir}/trajectory/{task}`;
the features served at each forecast are kept in `served` (checkpoint k -> features).
Under DDP rank 0 alone tracks and forecasts (every rank trains its share of the probe).
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

import pandas as pd
from transformers import PreTrainedModel

from foresight import distributed
from foresight.circuits import circuit
from foresight.updater.finetune import sft_config
from foresight.updater.strategies import Context, NodeScores, Strategy, register_strategy
from predictors.base import Forecaster, check_graph
from predictors.persist import load_forecaster
from predictors.problem import observe, split_runs
from trackers.manifest import Manifest
from trackers.probe import write_probe
from trackers.settings import CORPUS_SETTINGS
from trackers.store import load_checkpoint, load_probe
from trackers.tracker import CircuitTracker


@register_strategy
class Predictive(Strategy):
    """Static during the warm-up, then the forecast circuit (see the module docstring)."""

    name = "predictive"
    reselects = True
    needs_forecaster = True
    reforecasts: ClassVar[bool] = False

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        c = context.config
        forecaster = context.forecaster
        if forecaster is None:
            if c.forecaster is None:
                raise ValueError(f"strategy {self.name!r} needs a forecaster")
            forecaster = load_forecaster(c.forecaster)
        self.forecaster: Forecaster = forecaster
        check_graph(forecaster.graph, context.graph, f"model {c.model}")
        self.switch = context.switch_step(c.warmup_checkpoints or forecaster.problem.prefix + 1)
        self.n_planned = c.steps // c.every + 1
        task = context.data.task
        levels = ("node", "edge") if "edge" in forecaster.levels_needed else CORPUS_SETTINGS.levels
        settings = replace(
            CORPUS_SETTINGS,
            every=c.every,
            levels=levels,
            lookahead=forecaster.needs_lookahead,
            evaluate=False,
        )
        manifest = Manifest.of_finetune(f"{task.name}-{self.name}-s{c.seed}", c, self.name, regime="static")
        self.served: dict[int, pd.DataFrame] = {}
        self.checkpoints: list[pd.DataFrame] = []  # of the trajectory, read as they are written
        root = context.out_dir / "trajectory"
        self.path = root / task.name
        self.tracker = None
        writer = None
        if distributed.is_main():
            tokenizer = context.data.tokenizer
            self.tracker = CircuitTracker([task], tokenizer, context.graph, root, manifest, settings)
            writer = self.tracker.states[task.name].writer
        write_probe(writer, c.model, task, sft_config(c), settings)
        self.probe = load_probe(self.path) if distributed.is_main() else None

    def reselect(self, step: int, model: PreTrainedModel, scores: NodeScores) -> set[str] | None:
        if step > self.switch and not self.reforecasts:
            return None
        self.tracker.take_checkpoint(model, step)
        self.checkpoints.append(load_checkpoint(self.path, step))
        return self.forecast() if step >= self.switch else None

    def forecast(self) -> set[str]:
        """The forecast circuit (top-K by predicted score) from every checkpoint tracked so far."""
        rows = pd.concat(self.checkpoints, ignore_index=True)
        probes = None if self.probe is None else {str(rows["run"].iloc[0]): self.probe}
        (run,) = split_runs(rows, probes)
        obs = observe(
            run, self.forecaster.problem, run.n_checkpoints - 1, max(self.n_planned, run.n_checkpoints)
        )
        self.served[obs.k] = self.forecaster.features(obs)
        return circuit(self.forecaster.predict(obs), self.context.config.components, magnitude=False)


@register_strategy
class PredictiveDynamic(Predictive):
    """As `predictive`, then a new forecast at every later checkpoint."""

    name = "predictive-dynamic"
    reforecasts = True
