"""Forecasters by name."""

from __future__ import annotations

from typing import Any

from predictors.base import Forecaster
from predictors.baselines import BASELINES
from predictors.gnn import GNNForecaster
from predictors.lgbm import LGBMForecaster
from predictors.problem import ForecastProblem

LEARNED = ("lgbm", "lgbm-ranker", "lgbm-no-lookahead", "gnn")
MODELS: tuple[str, ...] = (*BASELINES, *LEARNED)


def make_forecaster(name: str, problem: ForecastProblem, seed: int = 0, **kwargs: Any) -> Forecaster:
    """An unfitted forecaster `name` (one of MODELS); kwargs go to its constructor."""
    if name in BASELINES:
        return BASELINES[name](problem, seed, **kwargs)
    if name in ("lgbm", "lgbm-ranker", "lgbm-no-lookahead"):
        ranker, lookahead = name == "lgbm-ranker", name != "lgbm-no-lookahead"
        return LGBMForecaster(problem, seed, ranker=ranker, lookahead=lookahead, **kwargs)
    if name == "gnn":
        return GNNForecaster(problem, seed, **kwargs)
    raise ValueError(f"unknown forecaster {name!r}; choose from {', '.join(MODELS)}")
