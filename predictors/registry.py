"""Forecasters by name: `FORECASTERS` (name -> factory of an unfitted forecaster, called with the
problem, the seed and keyword arguments) and `ALIASES` (another name -> a registered one).
`register_forecaster` adds one; `make_forecaster` builds one by name or alias."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from predictors.base import Forecaster
from predictors.baselines import BASELINES
from predictors.gnn import GNNForecaster
from predictors.lgbm import LGBMForecaster
from predictors.problem import ForecastProblem

Factory = Callable[..., Forecaster]
FORECASTERS: dict[str, Factory] = {}
ALIASES: dict[str, str] = {}


def register_forecaster(name: str, factory: Factory, aliases: tuple[str, ...] = ()) -> None:
    """Forecaster `name` (and its `aliases`) is built by `factory(problem, seed, **kwargs)`."""
    if name in FORECASTERS or name in ALIASES:
        raise ValueError(f"forecaster {name!r} is registered already")
    FORECASTERS[name] = factory
    ALIASES.update(dict.fromkeys(aliases, name))


def forecaster_name(name: str) -> str:
    """The registered name of `name` (itself, or the forecaster it is an alias of)."""
    name = ALIASES.get(name, name)
    if name not in FORECASTERS:
        raise ValueError(f"unknown forecaster {name!r}; choose from {', '.join(FORECASTERS)}")
    return name


def make_forecaster(name: str, problem: ForecastProblem, seed: int = 0, **kwargs: Any) -> Forecaster:
    """An unfitted forecaster `name` (one of MODELS, or an alias); kwargs go to its constructor."""
    return FORECASTERS[forecaster_name(name)](problem, seed, **kwargs)


for _name, _baseline in BASELINES.items():
    register_forecaster(_name, _baseline)
register_forecaster("lgbm", LGBMForecaster, aliases=("lightgbm",))
register_forecaster("lgbm-ranker", partial(LGBMForecaster, ranker=True))
register_forecaster("lgbm-no-lookahead", partial(LGBMForecaster, lookahead=False))
register_forecaster("gnn", GNNForecaster)

LEARNED = ("lgbm", "lgbm-ranker", "lgbm-no-lookahead", "gnn")
MODELS: tuple[str, ...] = tuple(FORECASTERS)
