"""The typed records: Manifest (the run part of a trajectory manifest), RunRecord (`run.json`)
and read_json_object, against the JSON they stand for, written out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from foresight.jsonfile import read_json_object
from foresight.sft import SFTConfig
from foresight.updater.config import FinetuneConfig
from trackers.manifest import Manifest
from trackers.run import RUN_FILE, RunDirError, RunRecord


def test_manifest_of_sft_is_the_free_full_run() -> None:
    sft = SFTConfig(steps=7, lr=0.01, seed=3)
    manifest = Manifest.of_sft("abc", "default", sft).to_dict()
    regime = {"mode": "full", "strategy": "free", "lr": 0.01}
    config = {"steps": 7, "batch_size": 32, "lr": 0.01, "weight_decay": 0.0, "warmup_steps": 10}
    config |= {"examples_per_task": 4000, "seed": 3, "dtype": "float32", "device": "auto"}
    config |= {"grad_accum": 1, "mode": "full", "lora_rank": 8, "lora_targets": None}
    expected = {"run_id": "abc", "model": "default", "seed": 3, "strategy": "free", "config": config}
    assert manifest == {**expected, "regime": regime}


def test_manifest_of_finetune_observes_the_regime_asked() -> None:
    config = FinetuneConfig(strategy="predictive", mode="lora", seed=2, forecaster="f")
    manifest = Manifest.of_finetune("ioi-predictive-s2", config, "predictive", regime="static").to_dict()
    assert manifest["strategy"] == "predictive" and manifest["seed"] == 2
    assert manifest["regime"] == {"mode": "lora", "strategy": "static", "lr": 5e-3}
    assert manifest["config"]["forecaster"] == "f"
    own = Manifest.of_finetune("r", FinetuneConfig(strategy="random", mode="full")).to_dict()
    assert own["regime"] == {"mode": "full", "strategy": "random", "lr": 1e-3}


def test_run_record_round_trip_and_errors(tmp_path: Path) -> None:
    RunRecord("r1", "sqlite:///x.db", {"model": "default", "tasks": ["ioi"]}).write(tmp_path)
    assert json.loads((tmp_path / RUN_FILE).read_text()) == {
        "run_id": "r1", "tracking_uri": "sqlite:///x.db", "model": "default", "tasks": ["ioi"],
    }  # fmt: skip
    assert RunRecord.read(tmp_path) == RunRecord(
        "r1", "sqlite:///x.db", {"model": "default", "tasks": ["ioi"]}
    )
    (tmp_path / RUN_FILE).write_text('{"run_id": "r1"}')
    with pytest.raises(RunDirError, match="run record without run_id and tracking_uri"):
        RunRecord.read(tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [("[1, 2]", "x.json: thing is not a JSON object"), ("{oops", "x.json: unreadable thing \\(")],
)
def test_read_json_object_names_the_file(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "x.json").write_text(text)
    with pytest.raises(KeyError, match=message):
        read_json_object(tmp_path / "x.json", "thing", KeyError)
    (tmp_path / "y.json").write_text('{"a": 1}')
    assert read_json_object(tmp_path / "y.json", "thing") == {"a": 1}
