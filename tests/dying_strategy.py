"""A strategy for the sweep tests: static, but the first trial to reach step 1 kills its Ray
worker (`os._exit`), as a crash would. `DiesOnce.marker`, a file it creates holding the trial's
key, makes it once; the class travels to the workers by value (see `ship_by_value`)."""

from __future__ import annotations

import os
import sys
from typing import ClassVar

from transformers import PreTrainedModel

from foresight.updater.strategies import NodeScores, Static, register_strategy


@register_strategy
class DiesOnce(Static):
    """Static; re-selects (every step) only to reach `reselect` at step 1."""

    name = "dies-once"
    reselects = True
    marker: ClassVar[str] = ""

    def reselect(self, step: int, model: PreTrainedModel, scores: NodeScores) -> set[str] | None:
        c = self.context
        try:
            with open(self.marker, "x") as handle:
                handle.write(f"{c.data.task.name}/{self.name}/s{c.config.seed}")
        except FileExistsError:
            return None
        os._exit(1)


def ship_by_value() -> None:
    """Pickle this module's classes by value for Ray: its workers cannot import `tests/`."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
