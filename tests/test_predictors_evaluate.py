"""Metrics against a hand computation; summaries, markdown and MLflow logging of an evaluation."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service import utils as tracking_utils
from synthetic import synthetic_runs, synthetic_trajectories, write_corpus
from test_bad_input import Result, assert_one_error_line, cli, free_port  # noqa: F401 (cli: a fixture)

from foresight.mlflow_log import PENDING_FILE
from predictors.baselines import Last
from predictors.evaluate import (
    ALL,
    PER_RUN_COLUMNS,
    bootstrap_ci,
    evaluate,
    leave_one_task_out,
    log_evaluation,
    summarize,
)
from predictors.problem import ForecastProblem
from predictors.scoring import run_metrics


def test_run_metrics_by_hand() -> None:
    a, b, c, d, e = "a0.h0", "a0.h1", "m0", "m1", "a1.h0"
    predicted = pd.Series({a: 0.9, b: 0.8, c: 0.1, d: 0.5, e: 0.3, "embed": 5.0})
    true = pd.Series({a: -3.0, b: 0.1, c: 2.0, d: 0.2, e: 1.0, "embed": 9.0})
    m = run_metrics(predicted.drop("embed"), true, n=2)
    # P = {a, b}, T = {a, c}: |P∩T| = 1, |P∪T| = 3
    assert m["jaccard"] == pytest.approx(1 / 3) and m["f1"] == 0.5 and m["precision_at_n"] == 0.5
    assert m["auroc"] == pytest.approx(3 / 6)  # a beats b, d, e; c beats none
    assert m["average_precision"] == pytest.approx((1 / 1 + 2 / 5) / 2)  # hits at ranks 1 and 5
    assert m["spearman"] == pytest.approx(0.0)  # rank differences 0, 3, -3, 1, -1: 1 - 6*20/120
    perfect = run_metrics(true.abs(), true, n=2)
    assert perfect["jaccard"] == perfect["auroc"] == 1.0 and perfect["spearman"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no true score"):
        run_metrics(predicted, true.drop(e), n=2)
    # embed is never a circuit member, though it has the largest predicted and true |score|
    assert run_metrics(predicted, true, n=2)["jaccard"] == pytest.approx(1 / 3)


def test_summary_and_gap_closed() -> None:
    per_run = pd.DataFrame(
        {
            "model": ["static"] * 4 + ["m"] * 4,
            "task": ["x", "x", "y", "y"] * 2,
            "run": list("abcd") * 2,
            "jaccard": [0.2, 0.2, 0.6, 0.2, 0.6, 0.6, 1.0, 0.6],
        }
    ).assign(f1=0.5, precision_at_n=0.5, auroc=np.nan, average_precision=0.5, spearman=0.1)
    s = summarize(per_run, n_boot=200).set_index(["model", "task"])
    assert s.loc[("static", ALL), "jaccard"] == pytest.approx(0.3) and s.loc[("m", "y"), "jaccard"] == 0.8
    assert s.loc[("m", ALL), "gap_closed"] == pytest.approx((0.7 - 0.3) / 0.7)
    assert np.isnan(s.loc[("m", "x"), "gap_closed"]) and np.isnan(s.loc[("m", ALL), "auroc"])
    assert s.loc[("m", ALL), "jaccard_lo"] <= 0.7 <= s.loc[("m", ALL), "jaccard_hi"]
    assert bootstrap_ci(np.array([0.5, 0.5])) == (0.5, 0.5)


def test_evaluation_table_and_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = synthetic_runs(tasks=("t0", "t1"), seeds=(0,), n_checkpoints=6)
    problem = ForecastProblem(2, "final", 6)
    result = evaluate(runs, problem, ["static", "last"], n_boot=100)
    assert set(result.per_run["task"]) == {"t0", "t1"} and len(result.per_run) == 4
    assert "| static" in result.markdown and "J t1" in result.markdown
    # the explicit URI as it was (None: unset), restored after the test
    monkeypatch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.create_experiment("forecast-test", artifact_location=str(tmp_path / "artifacts"))
    ids = log_evaluation(result, "forecast-test", tmp_path / "evaluation")
    client = MlflowClient()
    run = client.get_run(ids[0])
    parent = client.get_run(run.data.tags["mlflow.parentRunId"])
    assert parent.info.run_name == "evaluation-k2-hfinal-n6" and parent.info.status == "FINISHED"
    assert [client.get_run(i).info.run_name for i in ids] == ["static-k2-hfinal-n6", "last-k2-hfinal-n6"]
    assert run.data.params["model"] == "static" and run.data.params["horizon"] == "final"
    static_all = result.summary.query("model == 'static' and task == @ALL")["jaccard"].iloc[0]
    assert run.data.metrics["jaccard"] == pytest.approx(static_all)
    assert [a.path for a in client.list_artifacts(ids[1])] == ["comparison.md"]


def test_leave_one_family_out_never_trains_on_the_held_out_family() -> None:
    runs = synthetic_runs(tasks=("t0", "t1", "t2"), seeds=(0,), n_checkpoints=6)
    problem, seen = ForecastProblem(2, "final", 6), {}

    class Recording(Last):
        def _fit(self, training: list) -> None:  # noqa: ANN001
            seen[len(seen)] = {r.task for r in training}

    family = {"t0": "f", "t1": "f", "t2": "g"}.__getitem__
    per_run = leave_one_task_out(runs, problem, {"last": Recording}, groups=family)
    assert sorted(per_run["task"]) == ["f", "f", "g"]  # held-out units: families
    assert sorted(map(sorted, seen.values())) == [["t0", "t1"], ["t2"]]


def seeded_per_run(gain_free: float, gain_lora: float) -> pd.DataFrame:
    """9 families x 2 tasks x 2 runs (one per regime): last and static 0.5 at fit seed 0, lgbm
    0.5 + gain at fit seeds 0 and 1, with a little per-run noise."""
    rng, rows = np.random.default_rng(0), []
    for f in range(9):
        for t in range(2):
            for regime, gain in (("free", gain_free), ("lora-static", gain_lora)):
                run = dict(run=f"f{f}t{t}{regime}", task=f"f{f}t{t}", family=f"f{f}", seed=0, regime=regime)
                rows += [run | dict(model=c, fit_seed=0, jaccard=0.5) for c in ("last", "static")]
                rows += [
                    run | dict(model="lgbm", fit_seed=s, jaccard=0.5 + gain + rng.normal(0, 0.01))
                    for s in (0, 1)
                ]
    return pd.DataFrame(rows)


def test_seed_tests_find_a_gain_in_one_regime_at_the_family_level() -> None:
    from predictors.report import seed_summary, seed_tests

    tests = seed_tests(seeded_per_run(0.0, 0.1)).set_index(["fit_seed", "regime", "control"])
    lora = tests.loc[(1, "lora-static", "last")]
    assert lora["n_clusters"] == 9 and lora["n_runs"] == 18 and lora["n_tasks"] == 18
    assert lora["mean_diff"] == pytest.approx(0.1, abs=0.01)
    assert lora["p"] == pytest.approx(2 / 512) and lora["p_holm"] == pytest.approx(2 * 2 / 512)
    assert tests.loc[(0, "free", "last"), "p"] > 0.05 and not tests.loc[(0, "free", "static"), "significant"]
    summary = seed_summary(tests.reset_index()).set_index("regime")
    assert summary.loc["lora-static", "fit seeds"] == 2
    assert summary.loc["lora-static", "significant seeds (last): family, task"] == "2/2, 2/2"
    assert summary.loc["free", "significant seeds (last): family, task"] == "0/2, 0/2"


def test_the_corpus_size_csv_rebuilds_its_table_with_family_level_tests(tmp_path: Path) -> None:
    """A gain of +0.1 over `last` in every family at fraction 1 (both seeds), none at 0.25."""
    from predictors.report import corpus_size_tests, rebuild

    base = seeded_per_run(0.0, 0.0).query("model == 'last'").assign(k=3, n=8, fraction=None, train_runs=None)
    rng, learned = np.random.default_rng(1), []
    for fraction, gain in ((0.25, 0.0), (1.0, 0.1)):
        for seed in (0, 1):
            noise = rng.choice([-0.01, 0.01], len(base)) if gain == 0 else 0
            learned.append(
                base.assign(
                    model="lgbm", fit_seed=seed, fraction=fraction, jaccard=0.5 + gain + noise
                ).assign(train_runs=32 * fraction)
            )
    per_run = pd.concat([base, *learned], ignore_index=True)
    tests = corpus_size_tests(per_run).set_index(["fit_seed", "fraction"])
    full = tests.loc[(1, 1.0)]
    assert (full["n_clusters"], full["n_runs"], full["train_runs"]) == (9, 36, 32)
    assert full["mean_diff"] == pytest.approx(0.1) and full["p"] == pytest.approx(2 / 512)
    assert full["p_holm"] == pytest.approx(2 * 2 / 512)  # Holm over the seed's two fractions
    assert tests.loc[(0, 0.25), "p"] > 0.05
    path = tmp_path / "corpus_size_per_run.csv"
    per_run.reindex(columns=[*PER_RUN_COLUMNS, "fraction", "train_runs"]).to_csv(path, index=False)
    text = rebuild(path)
    assert "`last` on the same 36 held-out runs in 9 families: 0.500" in text
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines()]
    summary = {(c[0], c[1]): c[-1] for c in cells if len(c) == 10 and c[0] == "lgbm"}
    assert summary == {("lgbm", "0.250"): "0/2", ("lgbm", "1.000"): "2/2"}  # seeds significant after Holm


def test_cluster_paired_tests_use_families_not_runs() -> None:
    from predictors.evaluate import paired_tests

    per_run = seeded_per_run(0.1, 0.1)
    per_run = per_run[per_run["fit_seed"] == 0]
    by_family = paired_tests(per_run, [("lgbm", "last")]).iloc[0]
    by_task = paired_tests(per_run, [("lgbm", "last")], cluster="task").iloc[0]
    assert by_family["n_clusters"] == 9 and by_task["n_clusters"] == 18 and by_family["n_runs"] == 36
    assert by_family["p"] == pytest.approx(2 / 512) and by_task["p"] < by_family["p"]
    assert paired_tests(per_run, [("lgbm", "last")], hidden=3).iloc[0]["p_holm"] == pytest.approx(4 * 2 / 512)


def test_corpus_fingerprint_changes_with_any_file_of_the_corpus(tmp_path: Path) -> None:
    import shutil

    from predictors.problem import corpus_fingerprint

    corpus = Path(__file__).resolve().parents[1] / "predictors" / "assets" / "corpus"
    for name in ("arithmetic-s0", "arithmetic-s1"):
        shutil.copytree(corpus / name, tmp_path / "c" / name)
    before = corpus_fingerprint(tmp_path / "c")
    assert corpus_fingerprint(tmp_path / "c") == before and len(before) == 64
    shutil.copytree(tmp_path / "c", tmp_path / "copy")
    assert corpus_fingerprint(tmp_path / "copy") == before  # the contents count, not where
    probe = tmp_path / "c" / "arithmetic-s1" / "probe.parquet"
    probe.write_bytes(probe.read_bytes() + b"\0")
    assert corpus_fingerprint(tmp_path / "c") != before
    shutil.rmtree(tmp_path / "copy" / "arithmetic-s1")
    assert corpus_fingerprint(tmp_path / "copy") != before


def test_forecast_eval_logs_a_parent_with_one_child_per_model(
    cli: Callable[..., Result],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    corpus = write_corpus(
        *synthetic_trajectories(tasks=("t0", "t1"), seeds=(0,), n_checkpoints=5), tmp_path / "c"
    )
    args = ["forecast", "eval", "--trajectories", corpus, "--prefix", "2", "--horizon", "final"]
    args += ["--circuit-size", "5", "--model", "static", "--model", "last", "--log-mlflow"]
    done = cli(*args)
    assert done.code == 0, done.err
    client = MlflowClient()
    experiment = client.get_experiment_by_name("foresight-forecasting")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.mlflow.parentRunId IS NULL")
    assert (parent.info.run_name, parent.info.status) == ("evaluation-k2-hfinal-n5", "FINISHED")
    children = client.search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(c.data.params["model"] for c in children) == ["last", "static"]
    assert (tmp_path / "runs" / "forecast-evaluate" / "comparison.md").is_file()
    assert not list(tmp_path.rglob(PENDING_FILE))

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    shutil.rmtree(tmp_path / "runs")
    assert_one_error_line(cli(*args), "is not reachable")
    assert not (tmp_path / "runs").exists()  # checked before anything is written
