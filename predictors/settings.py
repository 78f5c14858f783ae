"""`ForecastProblem`: what a forecaster is asked (light to import: the command line builds its
options from these fields). See `predictors.problem` for the definitions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Literal

from foresight.config import ConfigError, check_settings, setting

Level = Literal["node", "edge"]
Horizon = int | Literal["final"]


@dataclass(frozen=True)
class ForecastProblem:
    """Observe checkpoints 0..`prefix`, forecast the top-`circuit_size` set at `horizon`."""

    prefix: int = setting(3, "k: the forecaster sees checkpoints 0..k", at_least=0)
    horizon: Horizon = setting("final", "checkpoints ahead, or 'final'")
    circuit_size: int = setting(10, "n: the forecast circuit is the top-n heads and MLPs", at_least=1)
    level: Level = setting("node", "node or edge", choices=("node", "edge"))

    def __post_init__(self) -> None:
        check_settings(self)
        if self.horizon != "final" and (type(self.horizon) is not int or self.horizon < 1):
            raise ConfigError("horizon", f"must be a number of checkpoints or 'final', not {self.horizon!r}")

    def target_index(self, n_checkpoints: int, prefix: int | None = None) -> int:
        """Checkpoint index of the forecast target for a run of `n_checkpoints` checkpoints."""
        k = self.prefix if prefix is None else prefix
        return n_checkpoints - 1 if self.horizon == "final" else k + int(self.horizon)

    def to_dict(self) -> dict:
        """The fields as a JSON-able dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> ForecastProblem:
        """The problem of a `to_dict` dict."""
        return cls(**d)
