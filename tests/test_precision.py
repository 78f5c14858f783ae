"""dtype and device: models load in the dtype asked for, `--device auto` resolves as
`foresight.models` documents (checked with a faked CUDA, since the suite never needs a GPU),
bfloat16 runs train with the Trainer's bf16 settings and leave unselected weights untouched,
and the tracker's synchronous path writes the same trajectory as its background copy."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from tiny_models import assert_only_components_moved
from transformers import AutoConfig

import trackers.run
from foresight.models import load_model, placement, torch_dtype
from foresight.sft import SFTConfig, make_trainer
from foresight.tasks import get_task
from foresight.updater import FinetuneConfig
from foresight.updater.finetune import finetune
from trackers.run import track
from trackers.store import load_trajectory
from trackers.tracker import TrackerSettings

FAST = {"components": 3, "steps": 4, "batch_size": 8, "lr": 1e-2, "every": 2, "n_pairs": 8, "n_eval": 16}
SETTINGS = TrackerSettings(every=2, n_pairs=8, n_eval=16, circuit_size=3)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_the_model_loads_in_the_dtype_asked_for(tiny_model_dir: Path, dtype: str) -> None:
    model, _ = load_model(tiny_model_dir, dtype, "auto" if not torch.cuda.is_available() else "cpu")
    assert {p.dtype for p in model.parameters()} == {torch_dtype(dtype)}
    assert model.device.type == "cpu"


def test_unknown_dtype_and_device_are_refused(tiny_model_dir: Path) -> None:
    with pytest.raises(ValueError, match="dtype 'int8': choose from float32, bfloat16, float16"):
        load_model(tiny_model_dir, "int8")
    with pytest.raises(ValueError, match="device 'gpu0': choose from"):
        load_model(tiny_model_dir, "float32", "gpu0")
    with pytest.raises(ValueError, match="float16 trains only with mode lora"):
        FinetuneConfig(dtype="float16", mode="full")


@pytest.fixture()
def fake_gpus(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """A machine with `count` CUDA GPUs whose first has `free` bytes free (no tensor is placed)."""
    gpus = {"count": 2, "free": 2**40}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus["count"])
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=0: (gpus["free"], 2**41))
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    return gpus


def test_auto_placement(
    tiny_model_dir: Path, fake_gpus: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """auto: the first GPU; spread with device_map auto when the weights exceed its free memory
    (the tiny model's float32 weights, counted by hand from its config, are the threshold);
    under torchrun, the rank's GPU; cuda:N only for a GPU that exists."""
    d, inner, layers = 32, 64, 2
    vocab = AutoConfig.from_pretrained(tiny_model_dir).vocab_size
    per_layer = 4 * d * d + 3 * d * inner + 2 * d
    weights = 4 * (2 * vocab * d + layers * per_layer + d)  # embed + untied head + layers + final norm
    assert placement("auto", tiny_model_dir, torch.float32) == "cuda:0"
    fake_gpus["free"] = weights - 1
    assert placement("auto", tiny_model_dir, torch.float32) == "auto"
    fake_gpus["free"] = weights
    assert placement("auto", tiny_model_dir, torch.float32) == "cuda:0"
    assert placement("auto", tiny_model_dir, torch.bfloat16) == "cuda:0"
    fake_gpus["free"] = weights // 2 - 1
    assert placement("auto", tiny_model_dir, torch.bfloat16) == "auto"
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert placement("auto", tiny_model_dir, torch.float32) == "cuda:1"
    assert placement("cuda:1", tiny_model_dir, torch.float32) == "cuda:1"
    with pytest.raises(ValueError, match="this machine has 2 GPU"):
        placement("cuda:2", tiny_model_dir, torch.float32)
    fake_gpus["count"] = 1
    monkeypatch.delenv("LOCAL_RANK")
    fake_gpus["free"] = 0
    assert placement("auto", tiny_model_dir, torch.float32) == "cuda:0"  # one GPU: nothing to spread over


def test_no_gpu_means_cpu(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert placement("auto", tiny_model_dir, torch.float32) == "cpu"
    with pytest.raises(ValueError, match="no CUDA GPU"):
        placement("cuda", tiny_model_dir, torch.float32)


def test_trainer_precision_follows_the_model_dtype(tiny_model_dir: Path, tmp_path: Path) -> None:
    for dtype, bf16 in (("float32", False), ("bfloat16", True)):
        model, tokenizer = load_model(tiny_model_dir, dtype, "cpu")
        trainer = make_trainer(model, tokenizer, [get_task("ioi")], SFTConfig(steps=1), tmp_path / dtype)
        assert (trainer.args.bf16, trainer.args.fp16, trainer.args.use_cpu) == (bf16, False, True)


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_bfloat16_finetune_keeps_the_dtype_and_unselected_weights(
    tiny_model_dir: Path, tmp_path: Path, mode: str
) -> None:
    """A bfloat16 static run: the merged model is bfloat16, some selected weight moved, and
    every weight entry outside the K selected components is bit-identical to the base."""
    config = FinetuneConfig(
        strategy="static", model=str(tiny_model_dir), mode=mode, dtype="bfloat16", device="cpu", **FAST
    )
    result = finetune("ioi", config, tmp_path)
    tuned, _ = load_model(tmp_path / "model", "bfloat16", "cpu")
    original, _ = load_model(config.model, "bfloat16", "cpu")
    assert {p.dtype for p in tuned.parameters()} == {torch.bfloat16}
    assert_only_components_moved(original, tuned, result.components)
    assert result.metrics["accuracy"].notna().all()


def test_the_synchronous_tracker_writes_what_the_background_copy_writes(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--tracking-copy off and on give the same trajectory; auto takes the synchronous path when
    the copy would not fit in the memory left."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    sft = SFTConfig(steps=4, batch_size=8, examples_per_task=64, lr=1e-2, device="cpu")
    runs = {}
    for copy in ("on", "off"):
        result = track(["ioi"], tmp_path / copy, str(tiny_model_dir), sft, SETTINGS, tracking_copy=copy)
        assert result.tracker.background == (copy == "on")
        runs[copy] = load_trajectory(tmp_path / copy / "trajectories" / "ioi")
    columns = ["step", "level", "component", "score", "grad_norm", "accuracy", "faithfulness"]
    pd.testing.assert_frame_equal(runs["on"][columns], runs["off"][columns])
    monkeypatch.setattr(trackers.run, "available_memory", lambda: 1024)
    result = track(["ioi"], tmp_path / "auto", str(tiny_model_dir), sft, SETTINGS)
    assert not result.tracker.background
