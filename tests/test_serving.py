"""Serve what was trained: the features a predictive run is served are those of its stored
trajectory, with no NaN where a corpus trajectory of its regime (`track_finetune`) has a value,
but in the look-ahead features of a forecaster that does not read them (not tracked then)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from foresight.updater import FinetuneConfig
from foresight.updater.finetune import finetune
from predictors.baselines import Last
from predictors.features import LOOKAHEAD_FEATURES
from predictors.persist import save_forecaster
from predictors.problem import ForecastProblem, observe, split_runs
from predictors.strategies import Predictive  # noqa: F401  (registers the forecasting strategies)
from trackers.run import track_finetune
from trackers.settings import CORPUS_SETTINGS
from trackers.store import load_probe, load_trajectory, read_manifest

FAST = {
    "components": 3,
    "steps": 6,
    "batch_size": 8,
    "lr": 1e-2,
    "every": 2,
    "n_eval": 16,
    "save_model": False,
}
OBSERVED = ["grad_norm_k", "lookahead_k", "lookahead_abs_k", "probe_abs", "regime_lora", "regime_log_lr"]
OBSERVED += ["prior_d_abs", "prior_in_circuit"]
STEP_0 = ["abs_0", "signed_0", "rank_0", "in_circuit_0", "probe_abs", "d_probe_abs_0", "regime_log_lr"]


def run_of(path: Path):  # noqa: ANN201
    rows, probe = load_trajectory(path), load_probe(path)
    return split_runs(rows, {str(rows["run"].iloc[0]): probe})[0]


class DeclaredLast(Last):
    """`Last`, declared to read the look-ahead or not (which decides what the strategy tracks)."""

    def __init__(self, problem: ForecastProblem, reads_lookahead: bool) -> None:
        super().__init__(problem)
        self.reads_lookahead = reads_lookahead

    @property
    def needs_lookahead(self) -> bool:
        return self.reads_lookahead


@pytest.mark.parametrize("lookahead", [True, False], ids=["lookahead", "no-lookahead"])
def test_predictive_serves_the_features_of_its_corpus_regime(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch, lookahead: bool
) -> None:  # noqa: ANN001
    model = str(tiny_model_dir)
    static = FinetuneConfig(strategy="static", model=model, **FAST)
    corpus = track_finetune("gender", static, tmp_path / "corpus", replace(CORPUS_SETTINGS, every=2))
    problem = ForecastProblem(prefix=1, horizon=1, circuit_size=3)
    forecaster = DeclaredLast(problem, lookahead).fit([run_of(corpus)])
    save_forecaster(forecaster, tmp_path / "forecaster")
    served: dict[int, pd.DataFrame] = {}
    forecast = Predictive.forecast

    def keep(self: Predictive) -> set[str]:
        out = forecast(self)
        served.update(self.served)
        return out

    monkeypatch.setattr(Predictive, "forecast", keep)
    config = replace(static, strategy="predictive", forecaster=str(tmp_path / "forecaster"))
    finetune("gender", config, tmp_path / "predictive", forecaster=forecaster)
    stored = tmp_path / "predictive/trajectory/gender"
    tracker = read_manifest(stored)["tracker"]
    assert (tracker["evaluate"], tracker["lookahead"]) == (False, lookahead)
    assert {**tracker, "evaluate": True, "lookahead": True} == read_manifest(corpus)["tracker"]
    assert "accuracy" not in load_trajectory(stored) and "accuracy" in load_trajectory(corpus)
    assert list(served) == [1]
    n_planned = FAST["steps"] // FAST["every"] + 1
    again = forecaster.features(observe(run_of(stored), problem, 1, n_planned))
    pd.testing.assert_frame_equal(served[1], again)
    trained = forecaster.features(observe(run_of(corpus), problem, 1))
    read = [f for f in trained.columns if lookahead or f not in LOOKAHEAD_FEATURES]
    assert not (served[1][read].isna() & trained[read].notna()).any().any()
    observed = [f for f in OBSERVED if f in read]
    assert served[1][observed].drop(["embed", "logits"]).notna().all().all()  # heads and MLPs
    assert served[1][list(LOOKAHEAD_FEATURES)].notna().any().any() == lookahead
    assert (served[1][["regime_lora", "regime_masked"]] == 1.0).all().all()
    np.testing.assert_allclose(served[1][STEP_0], trained[STEP_0], rtol=1e-9)  # same data, probe and regime
