"""Forecasters by name: `FORECASTERS` (a `foresight.registry.Registry`: name or alias -> factory
of an unfitted forecaster, called with the problem, the seed and keyword arguments);
`make_forecaster` builds one by name or alias."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from foresight.registry import Registry
from predictors.base import Forecaster
from predictors.baselines import BASELINES
from predictors.gnn import GNNForecaster
from predictors.lgbm import LGBMForecaster
from predictors.problem import ForecastProblem

Factory = Callable[..., Forecaster]
FORECASTERS: Registry[Factory] = Registry("forecaster")


def make_forecaster(name: str, problem: ForecastProblem, seed: int = 0, **kwargs: Any) -> Forecaster:
    """An unfitted forecaster `name` (one of MODELS, or an alias); kwargs go to its constructor."""
    return FORECASTERS.get(name)(problem, seed, **kwargs)


for _baseline in BASELINES:
    FORECASTERS.register(_baseline.name, _baseline)
FORECASTERS.register("lgbm", LGBMForecaster, aliases=("lightgbm",))
FORECASTERS.register("lgbm-ranker", partial(LGBMForecaster, ranker=True))
FORECASTERS.register("lgbm-no-lookahead", partial(LGBMForecaster, lookahead=False))
FORECASTERS.register("gnn", GNNForecaster)

LEARNED = ("lgbm", "lgbm-ranker", "lgbm-no-lookahead", "gnn")
MODELS: tuple[str, ...] = FORECASTERS.names()
