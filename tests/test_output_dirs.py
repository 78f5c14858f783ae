"""Ownership of output directories (foresight.output_dirs): what is refused, and what is let
through (a run continued, a sweep run again, a forecaster replaced on request)."""

from __future__ import annotations

from pathlib import Path

import pytest

from foresight.output_dirs import OutputDirError, claim_output, claim_sweep, record_sweep


def test_a_run_continued_is_let_through_and_a_new_one_refused(tmp_path: Path) -> None:
    run = tmp_path / "r"
    run.mkdir()
    (run / "run.json").write_text("{}")
    claim_output("--out", run, "track", resume=True)
    with pytest.raises(OutputDirError, match="holds a tracked run already"):
        claim_output("--out", run, "track")
    with pytest.raises(OutputDirError, match=r"holds a tracked run \(foresight track\) \(run.json\)"):
        claim_output("--out", run, "forecaster", resume=True)  # --overwrite replaces forecasters only
    with pytest.raises(OutputDirError, match=f"lies inside {run}"):
        claim_output("--out", run / "deep" / "er", "compare")


def test_a_sweep_run_again_is_let_through_and_another_sweep_refused(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    claim_sweep("out", out, ["ioi"], "study")
    assert not out.exists()  # a check writes nothing
    record_sweep(out, "study")
    (out / "ioi").mkdir()
    (out / "ioi" / "comparison.md").write_text("# its own comparison\n")
    claim_sweep("out", out, ["ioi"], "study")  # the same sweep: its comparison is its own
    with pytest.raises(OutputDirError, match="holds a sweep already"):
        claim_sweep("out", out, ["ioi"], "another")


def test_a_comparison_below_a_new_sweep_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ioi").mkdir()
    (tmp_path / "ioi" / "comparison.md").write_text("# an earlier comparison\n")
    with pytest.raises(
        OutputDirError, match="holds a comparison .* which the sweep's task ioi would overwrite"
    ):
        claim_sweep("out", tmp_path, ["ioi", "gender"], "study")
    claim_sweep("out", tmp_path, ["gender"], "study")  # a task that does not touch it


def test_names_longer_than_the_file_system_allows(tmp_path: Path) -> None:
    claim_output("--out", tmp_path / ("x" * 255), "track")
    with pytest.raises(OutputDirError, match="has 256 bytes, the file system allows 255"):
        claim_output("--out", tmp_path / ("x" * 256) / "r", "track")
    with pytest.raises(OutputDirError, match="has 256 bytes"):
        claim_output("--out", tmp_path / ("é" * 128), "track")  # bytes, not characters
