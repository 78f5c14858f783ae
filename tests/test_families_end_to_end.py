"""Every supported family end to end: a tiny random model of each (its transformers config class,
the shipped tokenizer) saved to disk, then a tracked SFT (`trackers.run.track`: node and edge eap
at every checkpoint) and a masked LoRA `finetune` of the static set, through the same entry points
as the CLI. Checked: every checkpoint holds a finite score for every node and edge of the
family's graph, and the finetune updated K components and left the rest as they were."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import FAMILIES, MODELS, assert_only_components_moved, tiny_config

from foresight.architectures import graph_of
from foresight.models import SHIPPED, load_model, load_tokenizer
from foresight.sft import SFTConfig
from foresight.updater import FinetuneConfig
from foresight.updater.finetune import finetune
from trackers.run import track
from trackers.store import load_trajectory
from trackers.tracker import TrackerSettings

SETTINGS = TrackerSettings(every=2, n_pairs=4, n_eval=8, circuit_size=3)
SFT = SFTConfig(steps=2, batch_size=4, examples_per_task=16, lr=1e-2, device="cpu")


@pytest.fixture(scope="module", params=FAMILIES)
def family_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer = load_tokenizer(SHIPPED["default"])
    torch.manual_seed(0)
    model = MODELS[request.param](tiny_config(request.param, vocab=len(tokenizer)))
    path = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_tracked_sft(family_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    track(["ioi"], tmp_path / "run", str(family_dir), SFT, SETTINGS)
    table = load_trajectory(tmp_path / "run" / "trajectories" / "ioi")
    graph = graph_of(load_model(family_dir)[0])
    expected = {"node": set(graph.node_names()), "edge": set(graph.edge_labels())}
    for (step, level), rows in table.groupby(["step", "level"]):
        assert set(rows.component) == expected[level], (step, level)
        assert np.isfinite(rows.score).all()
    assert sorted(table.step.unique()) == [0, 2]


def test_masked_lora_finetune(family_dir: Path, tmp_path: Path) -> None:
    config = FinetuneConfig(
        strategy="static", model=str(family_dir), components=3, steps=2, batch_size=4, lr=1e-2, every=2,
        n_pairs=4, n_eval=8, device="cpu",
    )  # fmt: skip
    result = finetune("ioi", config, tmp_path)
    assert len(result.components) == 3
    tuned = load_model(tmp_path / "model")[0]
    assert_only_components_moved(load_model(family_dir)[0], tuned, result.components)
