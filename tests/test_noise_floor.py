"""The noise floor of Circuit Distance and Stability: definitions by hand, resampling, and the
tracker option (on an unchanged model every CD lies inside the floor)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from foresight.architectures import graph_of
from foresight.circuit_metrics import circuit_distance
from foresight.encoding import encode_pairs
from foresight.models import load_model
from foresight.noise_floor import floor_from_circuits, noise_floor, resample
from foresight.tasks import get_task
from trackers.store import checkpoint_file, read_checkpoint
from trackers.tracker import CircuitTracker, TrackerSettings


def test_floor_of_hand_built_circuits() -> None:
    a = {"a0.h0", "a0.h1", "m0"}
    b = {"a0.h0", "a0.h1", "m1"}
    floor = floor_from_circuits([a, b, a], np.array([1.0, 0.8, 0.9]))
    # pairs (a, b), (a, a), (b, a): 1 - 2/4, 0, 1 - 2/4
    assert floor.cd["all"] == pytest.approx([0.5, 0.0, 0.5]) and floor.cd["head"] == pytest.approx([0, 0, 0])
    assert floor.cd["mlp"] == pytest.approx([1.0, 0.0, 1.0])
    assert floor.cd_p95("all") == pytest.approx(np.percentile([0.5, 0, 0.5], 95))
    assert floor.cs_p05() == pytest.approx(np.percentile([1.0, 0.8, 0.9], 5))
    assert floor.migrated(0.6) and not floor.migrated(0.5) and floor.migrated(0.01, "head")
    assert set(floor.summary()) == {
        "cd_floor_p95_all",
        "cd_floor_p95_head",
        "cd_floor_p95_mlp",
        "cs_floor_p05",
    }
    with pytest.raises(ValueError, match="at least 2"):
        floor_from_circuits([a], np.array([1.0]))


def test_resample_draws_pairs_with_replacement(tokenizer) -> None:  # noqa: ANN001
    pairs = encode_pairs(tokenizer, get_task("ioi").attribution_pairs(16, seed=0))
    drawn = resample(pairs, np.random.default_rng(0))
    assert len(drawn) == 16
    rows = {tuple(r.tolist()) for r in pairs.clean}
    assert all(tuple(r.tolist()) in rows for r in drawn.clean)
    assert len({tuple(r.tolist()) for r in drawn.clean}) < 16  # 16 draws of 16: a repeat is near sure
    same = resample(pairs, np.random.default_rng(0))
    assert torch.equal(same.clean, drawn.clean) and torch.equal(same.answer, drawn.answer)


def test_noise_floor_of_a_model(tiny_model_dir: Path) -> None:
    model, tokenizer = load_model(tiny_model_dir)
    pairs = encode_pairs(tokenizer, get_task("ioi").attribution_pairs(8, seed=0))
    floor = noise_floor(model, pairs, circuit_size=3, n_boot=20, seed=0)
    assert len(floor.cd["all"]) == 20 * 19 // 2 and len(floor.cs) == 20
    assert ((floor.cd["all"] >= 0) & (floor.cd["all"] <= 1)).all()
    again = noise_floor(model, pairs, circuit_size=3, n_boot=20, seed=0)
    assert np.array_equal(again.cd["all"], floor.cd["all"])  # seeded


def test_tracker_stores_the_floor_and_an_unchanged_model_never_migrates(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    model, tokenizer = load_model(tiny_model_dir)
    settings = TrackerSettings(every=2, levels=("node",), n_pairs=8, n_eval=8, circuit_size=3, noise_floor=20)
    task = get_task("ioi")
    tracker = CircuitTracker(
        [task], tokenizer, graph_of(model), tmp_path, {"run_id": "r", "model": "tiny", "seed": 0}, settings
    )
    for step in (0, 2, 4):  # no training in between: the model is unchanged
        tracker.take_checkpoint(model, step)
    _, scalars = read_checkpoint(checkpoint_file(tmp_path / "ioi", 0))
    floor = {k: v for k, v in scalars.items() if "_floor_" in k}
    assert set(floor) == {"cd_floor_p95_all", "cd_floor_p95_head", "cd_floor_p95_mlp", "cs_floor_p05"}
    assert "cd_floor_p95_all" not in read_checkpoint(checkpoint_file(tmp_path / "ioi", 2))[1]
    frame = tracker.metrics_frame("ioi")
    for kind in ("all", "head", "mlp"):
        assert (frame[f"cd_start_{kind}"] <= floor[f"cd_floor_p95_{kind}"]).all()
        assert (frame[f"migrated_{kind}"] == 0).all()
    # resumed: the floor comes back from step 0's scalars, not computed again
    resumed = CircuitTracker(
        [task],
        tokenizer,
        graph_of(model),
        tmp_path,
        {"run_id": "r", "model": "tiny", "seed": 0},
        settings,
        resume=True,
    )
    assert resumed.states["ioi"].floor == floor


def test_a_moved_circuit_counts_as_a_migration_only_above_the_floor() -> None:
    start = {"a0.h0", "a0.h1", "m0"}
    floor = floor_from_circuits([start, {"a0.h0", "a0.h1", "m1"}, start], np.ones(3))
    assert not floor.migrated(circuit_distance(start, {"a0.h0", "a0.h1", "m1"}))  # 0.5: inside
    assert floor.migrated(circuit_distance(start, {"a1.h0", "a1.h1", "m1"}))  # 1.0: above
