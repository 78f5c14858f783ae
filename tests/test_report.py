"""Results tables: paired tests against hand computation, and tables rebuilt from MLflow."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from foresight.report import (
    EVOLUTION_METRICS,
    ReportError,
    evolution_markdown,
    experiment_runs,
    report,
    strategy_frame,
    strategy_summary,
    strategy_tests,
    verdict,
)

ACCURACY = {  # (task, seed) -> strategy -> accuracy after
    ("ioi", 0): {"static": 0.60, "random": 0.50, "predictive": 0.70},
    ("ioi", 1): {"static": 0.64, "random": 0.52, "predictive": 0.71},
    ("bool", 0): {"static": 0.80, "random": 0.81, "predictive": 0.90},
    ("bool", 1): {"static": 0.70, "random": 0.69, "predictive": 0.85},
}


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"task": task, "seed": seed, "strategy": s, "accuracy_before": 0.5, "accuracy_after": a,
             "trainable_parameters": 100.0 if s != "free" else 1000.0}
            for (task, seed), by in ACCURACY.items()
            for s, a in by.items()
        ]
    )  # fmt: skip


def task_means(a: str, b: str) -> list[float]:
    """Per task, the mean over seeds of accuracy a - b (the cluster means), by hand."""
    tasks = sorted({task for task, _ in ACCURACY})
    return [float(np.mean([by[a] - by[b] for (t, _), by in ACCURACY.items() if t == task])) for task in tasks]


def test_strategy_tests_take_the_task_as_the_unit_as_computed_by_hand() -> None:
    tests = strategy_tests(frame()).set_index(["a", "b"])
    row = tests.loc[("predictive", "static")]
    means = task_means("predictive", "static")  # ioi 0.085, bool 0.125
    assert row["n"] == 4 and row["n_clusters"] == 2 and row["cluster"] == "task"
    assert row["mean_diff"] == pytest.approx(np.mean(means))
    # 4 sign patterns of 2 task means, 2 of them as extreme as observed: p = 1/2, never < 0.05
    assert row["p"] == pytest.approx(0.5) and row["p_holm"] == 1.0
    assert row["p_run"] < 0.2  # the 4 runs as if independent (Wilcoxon: all 4 positive, p = 1/8)
    assert ("static", "free") not in tests.index  # free did not run
    one_task = strategy_tests(frame()[frame()["task"] == "bool"]).set_index(["a", "b"])
    assert one_task.loc[("predictive", "static"), "cluster"] == "seed"
    assert one_task.loc[("predictive", "static"), "n_clusters"] == 2


def test_summary_interval_is_the_t_interval() -> None:
    table = strategy_summary(frame()).set_index("strategy")
    static = [by["static"] for by in ACCURACY.values()]
    half = 3.182446305284263 * np.std(static, ddof=1) / 2  # t(0.975, 3) * sd / sqrt(4)
    assert table.loc["static", "accuracy"] == pytest.approx(np.mean(static))
    assert table.loc["static", "ci_high"] - table.loc["static", "accuracy"] == pytest.approx(half)


def test_summary_interval_stays_inside_0_1() -> None:
    """Two seeds far apart: the t-interval (mean 0.5 +- 5.6) is cut to [0, 1]; near 1 only the
    upper end is cut."""
    rows = [("wide", 0, 0.1), ("wide", 1, 0.9), ("high", 0, 0.97), ("high", 1, 0.99), ("high", 2, 1.0)]
    frame = pd.DataFrame(
        [{"task": "t", "strategy": s, "seed": seed, "accuracy_before": 0.5, "accuracy_after": a,
          "trainable_parameters": 1.0} for s, seed, a in rows]
    )  # fmt: skip
    table = strategy_summary(frame).set_index("strategy")
    assert (table.loc["wide", "ci_low"], table.loc["wide", "ci_high"]) == (0.0, 1.0)
    high = [0.97, 0.99, 1.0]
    half = 4.302652729911275 * np.std(high, ddof=1) / math.sqrt(3)  # t(0.975, 2)
    assert table.loc["high", "ci_low"] == pytest.approx(np.mean(high) - half)
    assert table.loc["high", "ci_high"] == 1.0


def test_verdict_says_who_wins_and_when_nobody_does() -> None:
    lines = verdict(strategy_tests(frame()))
    # two tasks cannot make any difference significant, however large
    assert any(
        line.startswith("predictive vs static: no significant difference (mean +0.105") for line in lines
    )
    unit = {"cluster": "task", "n_clusters": 6, "n": 30}
    loss = pd.DataFrame([{"a": "x", "b": "y", "mean_diff": -0.25, "p": 0.01, "p_holm": 0.03} | unit])
    assert verdict(loss) == [
        "y beats x (mean +0.250, p_holm = 0.03, 6 tasks, 30 runs)"
    ]  # the winner's advantage
    held = pd.DataFrame([{"a": "x", "b": "y", "mean_diff": 0.2, "p": 0.01, "p_holm": 0.06} | unit])
    assert verdict(held)[0].startswith("x vs y: no significant difference")  # judged after Holm
    tie = pd.DataFrame([{"a": "x", "b": "y", "mean_diff": 0.0, "p": np.nan, "p_holm": np.nan} | unit])
    assert verdict(tie) == ["x vs y: no significant difference (mean +0.000, p_holm = nan, 6 tasks, 30 runs)"]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    return tmp_path


def test_report_rebuilds_the_strategy_table_from_mlflow(store: Path) -> None:
    experiment = mlflow.create_experiment("study-x", artifact_location=str(store / "artifacts"))
    for (task, seed), by in ACCURACY.items():
        for strategy, acc in by.items():
            tags = {"task": task, "strategy": strategy, "seed": str(seed)}
            with mlflow.start_run(experiment_id=experiment, tags=tags):
                mlflow.log_param("trainable_parameters", 100)
                mlflow.log_metrics({"accuracy_before": 0.5, "accuracy_after": acc, "wall_s": 1.0}, step=10)
    text = report("study-x")
    ioi_static = np.mean([ACCURACY["ioi", s]["static"] for s in (0, 1)])
    assert f"| ioi    |      0.5 |     {ioi_static:.4g} |" in text
    assert f"{np.mean(task_means('predictive', 'static')):.4g}" in text
    assert text.index("| static") < text.index("| random")  # the order the runs were made in


def test_report_rebuilds_the_evolution_table_from_mlflow(store: Path) -> None:
    experiment = mlflow.create_experiment("evo", artifact_location=str(store / "artifacts"))
    finals = [0.2, 0.6]
    for final in finals:
        with mlflow.start_run(experiment_id=experiment):
            for step, value in ((0, 0.0), (10, final)):  # the last step's value counts
                mlflow.log_metrics(
                    {"ioi/circuit_distance/to_start/heads": value,
                     "ioi/circuit_distance/to_start/mlps": value / 2,
                     "bool/circuit_distance/to_start/heads": 0.1, "ioi/circuit_conflict/with_bool": value},
                    step=step,
                )  # fmt: skip
    text = report("evo")
    row = next(line for line in text.splitlines() if line.startswith("| ioi"))
    assert f"{np.mean(finals):.3f} ± {np.std(finals, ddof=1):.3f}" in row
    assert f"{np.mean(finals) / 2:.3f} ± {np.std(finals, ddof=1) / 2:.3f}" in row
    bool_row = next(line for line in text.splitlines() if line.startswith("| bool"))
    assert "0.100 ± 0.000" in bool_row


def test_evolution_table_of_a_single_run_shows_values_without_a_spread() -> None:
    frame = pd.DataFrame([{"run": "r", "task": "ioi", **dict.fromkeys(EVOLUTION_METRICS, 0.25), "cc": 0.5}])
    row = next(line for line in evolution_markdown(frame, "t").splitlines() if line.startswith("| ioi"))
    assert row.count("0.250") == len(EVOLUTION_METRICS) and "0.500" in row and "±" not in row


def test_report_of_a_missing_or_empty_experiment_is_a_clear_error(store: Path) -> None:
    with pytest.raises(ReportError, match="no MLflow experiment 'nope'"):
        report("nope")
    mlflow.create_experiment("empty", artifact_location=str(store / "artifacts"))
    with pytest.raises(ReportError, match="holds no strategy-comparison or tracked runs"):
        report("empty")


def test_cli_report_writes_the_table_or_says_what_is_missing(store: Path) -> None:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlflow.db", "COLUMNS": "40"}
    experiment = mlflow.create_experiment("cli", artifact_location=str(store / "artifacts"))
    with mlflow.start_run(experiment_id=experiment, tags={"task": "ioi", "strategy": "static", "seed": "0"}):
        mlflow.log_param("trainable_parameters", 10)
        mlflow.log_metrics({"accuracy_before": 0.5, "accuracy_after": 0.75, "wall_s": 1.0})
    command = [sys.executable, "-m", "foresight.app.cli", "report"]
    done = subprocess.run([*command, "--experiment", "cli", "--out", str(store / "t.md")], env=env, text=True,
                          capture_output=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "| ioi    |      0.5 |     0.75 |" in (store / "t.md").read_text()
    assert (
        done.stdout.strip() == (store / "t.md").read_text().strip()
    )  # printed unwrapped, even at 40 columns
    missing = subprocess.run([*command, "--experiment", "nope"], env=env, text=True, capture_output=True)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"error: no MLflow experiment 'nope' at sqlite:///{store}/mlflow.db"
    ]
    both = subprocess.run([*command, "--experiment", "cli", "--per-run", "x.csv"], env=env, text=True,
                          capture_output=True)  # fmt: skip
    assert both.returncode == 2 and "give one of --experiment and --per-run" in both.stderr


def test_the_per_run_csv_rebuilds_the_same_tables_and_tests(store: Path) -> None:
    from foresight.report import per_run_csv, read_per_run_csv, strategy_markdown
    from foresight.tasks import task_family
    from predictors.report import rebuild

    experiment = mlflow.create_experiment("csv", artifact_location=str(store / "artifacts"))
    for (task, seed), by in ACCURACY.items():
        for strategy, acc in by.items():
            with mlflow.start_run(
                experiment_id=experiment, tags={"task": task, "strategy": strategy, "seed": str(seed)}
            ):
                mlflow.log_param("trainable_parameters", 100)
                mlflow.log_metrics({"accuracy_before": 0.5, "accuracy_after": acc, "wall_s": 1.0})
    frame = strategy_frame(experiment_runs("csv"))
    path = per_run_csv(frame, store / "study_per_run.csv", task_family, "lora")
    written = pd.read_csv(path)
    assert len(written) == 12 and written["run"].nunique() == 12 and set(written["regime"]) == {"lora"}
    assert sorted(written["value"]) == sorted(a for by in ACCURACY.values() for a in by.values())
    body = lambda text: text.split("\n", 1)[1]  # noqa: E731 (the title names the source)
    assert body(rebuild(path)) == body(report("csv"))
    assert body(strategy_markdown(read_per_run_csv(path), "x")) == body(report("csv"))
    bad = store / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ReportError, match="not a per-run results CSV"):
        rebuild(bad)


def test_a_strategy_run_repeated_for_the_same_seed_counts_once_with_its_latest_result() -> None:
    runs = pd.DataFrame(
        {
            "run_id": ["r1", "r2", "r3"],
            "tags.task": ["ioi", "ioi", "ioi"],
            "tags.strategy": ["static", "static", "static"],
            "tags.seed": ["0", "1", "0"],
            "metrics.accuracy_before": [0.5, 0.5, 0.5],
            "metrics.accuracy_after": [0.6, 0.7, 0.9],  # oldest first: seed 0 ran again and got 0.9
            "params.trainable_parameters": ["10", "10", "10"],
            "metrics.wall_s": [1.0, 1.0, 1.0],
        }
    )
    frame = strategy_frame(runs)
    assert sorted(zip(frame["seed"], frame["accuracy_after"], strict=True)) == [(0, 0.9), (1, 0.7)]


def test_evolution_table_counts_migrations_above_the_noise_floor() -> None:
    base = {m: 0.1 for m in EVOLUTION_METRICS} | {"cc": 0.2, "cd_floor_p95_mlp": 0.3, "migrated_mlp": 0.0}
    runs = [
        base
        | {"run": "a", "task": "ioi", "cd_start_head": 0.9, "cd_floor_p95_head": 0.5, "migrated_head": 1.0},
        base
        | {"run": "b", "task": "ioi", "cd_start_head": 0.4, "cd_floor_p95_head": 0.6, "migrated_head": 0.0},
    ]
    text = evolution_markdown(pd.DataFrame(runs), "t")
    row = next(line for line in text.splitlines() if line.startswith("| ioi"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    header = [c.strip() for c in text.splitlines()[4].strip("|").split("|")]
    got = dict(zip(header, cells, strict=True))
    assert (
        got["migrated_head"] == "1/2" and got["migrated_mlp"] == "0/2" and got["cd_floor_p95_head"] == "0.550"
    )
    assert "migrated_head" not in evolution_markdown(pd.DataFrame(runs).drop(columns=["migrated_head"]), "t")


def test_the_evolution_and_noise_floor_csvs_rebuild_their_tables(tmp_path: Path) -> None:
    from predictors.report import rebuild

    base = {m: 0.1 for m in EVOLUTION_METRICS} | {"cc": 0.2}
    runs = pd.DataFrame([base | {"run": r, "seed": i, "task": "ioi"} for i, r in enumerate("ab")])
    runs.loc[1, "cd_start_head"] = 0.5
    runs.to_csv(tmp_path / "evolution_per_run.csv", index=False)
    title = "Circuit evolution (evolution_per_run.csv)"
    assert rebuild(tmp_path / "evolution_per_run.csv") == evolution_markdown(runs, title)
    assert "0.300 ± 0.283" in rebuild(tmp_path / "evolution_per_run.csv")  # cd_start_head: 0.1, 0.5

    floor = pd.DataFrame({"task": "ioi", "kind": "head", "cd": [0.0, 0.25, 0.5, 0.75, 1.0]})
    floor.to_csv(tmp_path / "noise_floor_per_run.csv", index=False)
    row = next(line for line in rebuild(tmp_path / "noise_floor_per_run.csv").splitlines() if "| ioi" in line)
    # 95th percentile, linear between order statistics: 0.75 + 0.8 x (1.0 - 0.75)
    assert [c.strip() for c in row.strip("|").split("|")] == ["ioi", "head", "5", "0.500", "0.950"]


def test_a_design_study_csv_is_sent_to_its_own_script(tmp_path: Path) -> None:
    from predictors.report import rebuild

    path = tmp_path / "design_per_run.csv"
    pd.DataFrame({"task": ["ioi"], "seed": [0], "strategy": ["last@k0"], "value": [0.5]}).to_csv(path)
    with pytest.raises(ReportError, match=r"design-study CSV .* experiments/study_design\.py --per-run"):
        rebuild(path)
