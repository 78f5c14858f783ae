"""Learned forecasters: they beat random and static on held-out tasks of a trend corpus;
determinism; save/load round trips; a forecaster refuses runs of another graph; CLI functions."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from synthetic import synthetic_runs, synthetic_trajectories, write_corpus

from foresight.app.forecast import eval_command, predict_command, train_command
from foresight.circuits import circuit
from predictors.base import forecast
from predictors.evaluate import ALL, evaluate
from predictors.features import FEATURES, LOOKAHEAD_FEATURES
from predictors.persist import load_forecaster, save_forecaster
from predictors.problem import ForecasterMismatch, ForecastProblem, observe, target_scores
from predictors.registry import make_forecaster

torch.set_num_threads(1)
PROBLEM = ForecastProblem(prefix=3, horizon="final", circuit_size=6)


@pytest.fixture(scope="module")
def runs() -> list:
    return synthetic_runs(tasks=("t0", "t1", "t2"), seeds=(0, 1), noise=0.3)


@pytest.fixture(scope="module")
def summary(runs: list) -> pd.DataFrame:
    models = {
        "static": lambda p: make_forecaster("static", p),
        "random": lambda p: make_forecaster("random", p),
        "lgbm": lambda p: make_forecaster("lgbm", p, num_boost_round=150),
        "gnn": lambda p: make_forecaster("gnn", p, epochs=60),
    }
    result = evaluate(runs, PROBLEM, models, n_boot=100)
    return result.summary[result.summary["task"] == ALL].set_index("model")


@pytest.mark.parametrize("model", ["lgbm", "gnn"])
def test_learned_forecasters_beat_random_and_static(summary: pd.DataFrame, model: str) -> None:
    j = summary["jaccard"]
    assert j[model] > j["random"] + 0.3 and j[model] > j["static"] + 0.2, j.to_dict()
    assert summary.loc[model, "gap_closed"] > 0.3


def test_ranker_beats_static(runs: list) -> None:
    train, test = [r for r in runs if r.task != "t0"], [r for r in runs if r.task == "t0"]
    ranker = make_forecaster("lgbm-ranker", PROBLEM).fit(train)
    static = make_forecaster("static", PROBLEM).fit(train)
    hits = {name: 0 for name in ("ranker", "static")}
    for run in test:
        true = circuit(target_scores(run, PROBLEM), PROBLEM.circuit_size)
        hits["ranker"] += len(true & set(forecast(ranker, run).query("in_circuit")["component"]))
        hits["static"] += len(true & set(forecast(static, run).query("in_circuit")["component"]))
    assert hits["ranker"] > hits["static"], hits


@pytest.mark.parametrize("model", ["lgbm", "lgbm-no-lookahead", "gnn", "anticipate"])
def test_save_load_round_trip_and_graph_mismatch(runs: list, model: str, tmp_path: Path) -> None:
    kwargs = {"epochs": 20} if model == "gnn" else {}
    f = make_forecaster(model, PROBLEM, seed=3, **kwargs).fit(runs[:4])
    again = make_forecaster(model, PROBLEM, seed=3, **kwargs).fit(runs[:4])
    obs = observe(runs[5], PROBLEM)
    pd.testing.assert_series_equal(f.predict(obs), again.predict(obs))  # deterministic with a seed
    loaded = load_forecaster(save_forecaster(f, tmp_path / model))
    assert loaded.name == model and loaded.problem == PROBLEM and loaded.graph == f.graph
    pd.testing.assert_series_equal(loaded.predict(obs), f.predict(obs))
    other = synthetic_runs(tasks=("t0",), seeds=(0,), n_heads=3)[0]
    with pytest.raises(ForecasterMismatch, match="differs from the forecaster's training graph"):
        loaded.predict(observe(other, PROBLEM))


def test_lgbm_without_lookahead_reads_no_lookahead_feature(runs: list, tmp_path: Path) -> None:
    with_it, without = (make_forecaster(m, PROBLEM).fit(runs[:4]) for m in ("lgbm", "lgbm-no-lookahead"))
    assert set(LOOKAHEAD_FEATURES) <= set(with_it.booster.feature_name()) and with_it.needs_lookahead
    loaded = load_forecaster(save_forecaster(without, tmp_path / "f"))
    assert loaded.booster.feature_name() == [f for f in FEATURES if f not in LOOKAHEAD_FEATURES]
    assert not loaded.needs_lookahead


def test_cli_functions(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = write_corpus(
        *synthetic_trajectories(tasks=("t0", "t1"), seeds=(0,), n_checkpoints=6), tmp_path / "c"
    )
    out = train_command(root, prefix=2, horizon="final", model="lgbm", circuit_size=5, out=tmp_path / "f")
    table = predict_command(out, root / "t0-s0")
    assert table["in_circuit"].sum() == 5 and table["rank"].tolist() == list(range(1, 23))
    summary = eval_command(root, prefix=2, horizon="2", circuit_size=5, models=["static", "extrapolate"])
    assert set(summary["model"]) == {"static", "extrapolate"}
    printed = capsys.readouterr().out
    assert "forecast of" in printed and "static" in printed


def test_cli_holds_out_whole_families(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`--hold-out ioi` also leaves out ioi's template variant; eval holds out families."""
    tasks = ("ioi", "ioi_handed", "gender")
    root = write_corpus(*synthetic_trajectories(tasks=tasks, seeds=(0,), n_checkpoints=6), tmp_path / "c")
    train_command(root, 2, "final", "static", 5, tmp_path / "f", hold_out=["ioi"])
    assert "trained static on 1 runs" in capsys.readouterr().out
    summary = eval_command(root, prefix=2, horizon="2", circuit_size=5, models=["static"])
    assert set(summary["task"]) == {"ioi", "gender", "all"}  # ioi_handed is held out with ioi
