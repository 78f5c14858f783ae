"""`TrackerSettings(mib=True)`: MIB's CPR and CMD per tracked checkpoint, as an MLflow table
written on the tracker's writer thread."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

import trackers.tracker
from foresight.metric_names import mlflow_name
from foresight.sft import SFTConfig
from trackers.mib_log import write_mib_table
from trackers.run import track
from trackers.tracker import TrackerSettings


def test_tracked_run_logs_a_mib_table_per_checkpoint(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    settings = TrackerSettings(every=2, n_pairs=8, n_eval=8, circuit_size=3, mib=True)
    threads: list[str] = []

    def write(*args: object) -> None:  # where the table is written: the writer thread
        threads.append(threading.current_thread().name)
        write_mib_table(*args)

    monkeypatch.setattr(trackers.tracker, "write_mib_table", write)
    result = track(["ioi"], tmp_path / "run", str(tiny_model_dir), SFTConfig(steps=2, batch_size=4,
                   examples_per_task=16), settings)  # fmt: skip
    assert len(threads) == 2 and all(t.startswith("tracker-writes") for t in threads), threads
    client = MlflowClient(uri)
    logged = {a.path for a in client.list_artifacts(result.run_id, "mib/ioi")}
    assert logged == {"mib/ioi/step-00000000.json", "mib/ioi/step-00000002.json"}
    local = client.download_artifacts(result.run_id, "mib/ioi/step-00000002.json", str(tmp_path))
    table = pd.read_json(local, orient="split")
    assert set(zip(table.level, table.selection, strict=True)) == {
        ("node", "top-k"),
        ("edge", "top-k"),
        ("edge", "greedy"),
    }
    for (level, selection), rows in table.groupby(["level", "selection"]):
        x = rows.fraction.to_numpy()
        assert rows.f_abs.iloc[-1] == pytest.approx(1.0, abs=1e-5)  # the full model
        area = float(
            ((x[1:] - x[:-1]) * (rows.f_signed.to_numpy()[1:] + rows.f_signed.to_numpy()[:-1]) / 2).sum()
        )
        assert rows.cpr.iloc[0] == pytest.approx(area)
        history = client.get_metric_history(result.run_id, mlflow_name("ioi", f"mib_cmd_{level}_{selection}"))
        assert [m.step for m in history] == [0, 2]
        assert history[-1].value == pytest.approx(rows.cmd.iloc[0])
        assert np.isfinite(rows.cmd.iloc[0])
