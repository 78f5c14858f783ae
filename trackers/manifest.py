"""`Manifest`: what a tracked run states about itself in each of its trajectories' manifests.

The tracker adds, per task, the task, the graph, its own settings and the trajectory's run id
(`{run_id}-{task}`, with `mlflow_run_id` = `run_id`); the store adds the schema version, the
graph fingerprint and the creation time (`trackers.store.TrajectoryWriter`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from foresight.sft import SFTConfig
from foresight.updater.config import FinetuneConfig


@dataclass(frozen=True)
class Manifest:
    """`run_id` (the MLflow run, or a name), `model`, `seed`, the update `strategy`, the run's
    `config` (its settings as JSON), `regime` (mode, strategy and lr of the training the
    trajectory observes) and, where the run trains on data of its own, `train_data`
    (`foresight.sft_data.SFTData.describe`: path, format, digest, rows, tokens)."""

    run_id: str
    model: str
    seed: int
    strategy: str
    config: Mapping[str, Any] = field(default_factory=dict)
    regime: Mapping[str, Any] = field(default_factory=dict)
    train_data: Mapping[str, Any] | None = None

    @classmethod
    def of_sft(
        cls, run_id: str, model: str, sft: SFTConfig, train_data: Mapping[str, Any] | None = None
    ) -> Manifest:
        """A plain tracked SFT run (`foresight track`): strategy free, `sft.mode` training at
        `sft.lr`, on `train_data` (described) or on the tasks' own examples (None)."""
        regime = {"mode": sft.mode, "strategy": "free", "lr": sft.lr}
        return cls(run_id, model, sft.seed, "free", asdict(sft), regime, train_data)

    @classmethod
    def of_finetune(
        cls, run_id: str, config: FinetuneConfig, strategy: str | None = None, regime: str | None = None
    ) -> Manifest:
        """A strategy run of `config` (as `strategy`, default its own), observing the regime of
        strategy `regime` (default: the same)."""
        name = strategy or config.strategy
        return cls(
            run_id, str(config.model), config.seed, name, config.to_dict(), config.regime(regime or name)
        )

    def to_dict(self) -> dict[str, Any]:
        """The fields as the JSON keys of a trajectory manifest."""
        fields = {**asdict(self), "config": dict(self.config), "regime": dict(self.regime)}
        if self.train_data is None:
            del fields["train_data"]
        return fields
