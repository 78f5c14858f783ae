"""LightGBM forecaster: a binary classifier (or a lambdarank ranker) on `features.FEATURES`
(without `LOOKAHEAD_FEATURES` when built with lookahead=False: cheaper to serve).

Trained on every prefix k' <= k of the training runs. Early stopping uses a validation split
of whole training tasks (about a quarter, at least one, when there are two tasks or more).
The classifier weighs positives by scale_pos_weight = #negatives / #positives; the ranker uses
one query group per (run, k). Deterministic: deterministic=True, force_row_wise, fixed n_jobs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from predictors.base import Forecaster
from predictors.dataset import Dataset, build_dataset, training_prefixes
from predictors.features import FEATURES, LOOKAHEAD_FEATURES
from predictors.problem import ForecastProblem, Observation, Trajectory

MODEL_FILE = "model.txt"


class LGBMForecaster(Forecaster):
    """LightGBM on `FEATURES`: a binary classifier of future membership, or a lambdarank ranker."""

    name = "lgbm"

    def __init__(
        self,
        problem: ForecastProblem,
        seed: int = 0,
        ranker: bool = False,
        lookahead: bool = True,
        n_jobs: int = 1,
        num_boost_round: int = 300,
        early_stopping: int = 30,
        **params: Any,
    ) -> None:
        super().__init__(problem, seed)
        self.lookahead = lookahead
        self.ranker, self.num_boost_round, self.early_stopping = ranker, num_boost_round, early_stopping
        self.params = {
            "objective": "lambdarank" if ranker else "binary",
            "learning_rate": 0.05,
            "num_leaves": 15,
            "min_data_in_leaf": 10,
            "feature_fraction": 0.9,
            "bagging_fraction": 0.9,
            "bagging_freq": 1,
            "lambda_l2": 1.0,
            "seed": seed,
            "deterministic": True,
            "force_row_wise": True,
            "n_jobs": n_jobs,
            "verbose": -1,
            **(
                {"metric": "ndcg", "eval_at": [problem.circuit_size]}
                if ranker
                else {"metric": "binary_logloss"}
            ),
            **params,
        }
        self.booster: lgb.Booster | None = None
        self.name = _name(ranker, lookahead)

    @property
    def feature_names(self) -> list[str]:
        """The columns of `FEATURES` the model reads."""
        return [f for f in FEATURES if self.lookahead or f not in LOOKAHEAD_FEATURES]

    @property
    def needs_lookahead(self) -> bool:
        return self.lookahead

    def _lgb_data(self, data: Dataset, reference: lgb.Dataset | None = None) -> lgb.Dataset:
        kwargs: dict[str, Any] = {"reference": reference, "free_raw_data": False}
        if self.ranker:  # rows of a group are contiguous: build_dataset emits them run by run, k by k
            kwargs["group"] = data.groups.groupby(data.groups, sort=False).size().to_numpy()
        names = self.feature_names
        return lgb.Dataset(
            data.features[names].to_numpy(), data.labels.to_numpy(), feature_name=names, **kwargs
        )

    def _fit(self, runs: Sequence[Trajectory]) -> None:
        tasks = sorted({r.task for r in runs})
        rng = np.random.default_rng(self.seed)
        n_val = max(1, len(tasks) // 4) if len(tasks) >= 2 else 0
        val_tasks = set(rng.choice(tasks, size=n_val, replace=False)) if n_val else set()
        train = build_dataset(
            [r for r in runs if r.task not in val_tasks],
            self.problem,
            training_prefixes(self.problem),
            self.priors,
        )
        params = dict(self.params)
        if not self.ranker:
            pos = max(int(train.labels.sum()), 1)
            params["scale_pos_weight"] = (len(train.labels) - pos) / pos
        train_set = self._lgb_data(train)
        callbacks, valid_sets = [], []
        if val_tasks:
            val = build_dataset(
                [r for r in runs if r.task in val_tasks],
                self.problem,
                training_prefixes(self.problem),
                self.priors,
            )
            valid_sets = [self._lgb_data(val, train_set)]
            callbacks = [lgb.early_stopping(self.early_stopping, first_metric_only=True, verbose=False)]
        self.booster = lgb.train(
            params, train_set, self.num_boost_round, valid_sets=valid_sets, callbacks=callbacks
        )
        self.params = params

    def _predict(self, obs: Observation) -> pd.Series:
        if self.booster is None:
            raise RuntimeError("lgbm: predict before fit")
        f = self.features(obs)
        best = self.booster.best_iteration or None
        values = self.booster.predict(f[self.feature_names].to_numpy(), num_iteration=best)
        return pd.Series(values, index=f.index)

    def state(self) -> dict[str, Any]:
        return {
            "ranker": self.ranker, "lookahead": self.lookahead, "params": self.params,
            "feature_names": self.feature_names,
        }  # fmt: skip

    def set_state(self, state: dict[str, Any]) -> None:
        self.ranker, self.params = state["ranker"], state["params"]
        self.lookahead = state.get("lookahead", True)  # saved before the option: all of FEATURES
        self.name = _name(self.ranker, self.lookahead)

    def save_model(self, directory: Path) -> None:
        self.booster.save_model(str(directory / MODEL_FILE))

    def load_model(self, directory: Path) -> None:
        """Load `model.txt` after checking it is a complete LightGBM text model (LightGBM aborts
        the process on some truncated files instead of raising)."""
        file = directory / MODEL_FILE
        self.booster = lgb.Booster(model_str=check_model_text(file))


def _name(ranker: bool, lookahead: bool) -> str:
    """The registry name: lgbm, lgbm-ranker, lgbm-no-lookahead or lgbm-ranker-no-lookahead."""
    return "lgbm" + ("-ranker" if ranker else "") + ("" if lookahead else "-no-lookahead")


def check_model_text(file: Path) -> str:
    """The text of a LightGBM model file; FileNotFoundError if it is missing, ValueError unless
    it is complete: the `tree` header, as many trees as `tree_sizes` lists, and the closing
    `end of trees`, `end of parameters` and `pandas_categorical` sections."""
    if not file.is_file():
        raise FileNotFoundError(f"{file}: missing (the forecaster's LightGBM model)")
    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{file}: unreadable LightGBM model ({e})") from None
    lines = text.splitlines()
    sizes = next((line.split("=", 1)[1].split() for line in lines if line.startswith("tree_sizes=")), None)
    trees = sum(line.startswith("Tree=") for line in lines)
    complete = (
        lines[:1] == ["tree"]
        and sizes is not None
        and trees == len(sizes)
        and "end of trees" in lines
        and "end of parameters" in lines
        and lines[-1].startswith("pandas_categorical:")
    )
    if not complete:
        raise ValueError(f"{file}: not a complete LightGBM model (truncated?)")
    return text
