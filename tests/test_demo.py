"""The demo end to end in its few-step variant (`--quick`): every stage runs, the comparison of the
five strategies lands in MLflow, and the closing lines say where to look."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow

DEMO = Path(__file__).resolve().parents[1] / "experiments" / "demo.py"


def test_quick_demo_runs_every_stage_and_logs_the_comparison(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        [sys.executable, str(DEMO), "--quick"], cwd=tmp_path, env=env, text=True, capture_output=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for stage in ("evaluate", "track", "forecast eval", "forecast train", "compare"):
        assert f"$ foresight {stage}" in done.stdout
    assert f"mlflow ui --backend-store-uri {uri}" in done.stdout
    assert (tmp_path / "runs/demo/forecaster/forecaster.json").is_file()
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name("foresight-compare")
    runs = mlflow.search_runs([experiment.experiment_id])
    children = runs[runs["tags.strategy"].notna()]
    assert sorted(children["tags.strategy"]) == sorted(["free", "static", "random", "predictive", "oracle"])
    assert set(children["tags.task"]) == {"ioi"}
    assert children["metrics.accuracy_after"].between(0, 1).all()
