"""The study runner's task claims: one live process per task, stale claims taken over."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

from strategy_study import claim  # noqa: E402


def test_a_task_is_claimed_once_and_a_dead_process_claim_is_taken_over(tmp_path: Path) -> None:
    task = tmp_path / "ioi"
    assert claim(task)
    assert not claim(task)  # this (live) process holds it
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    (task / "claimed").write_text(finished.stdout.decode().strip())  # a pid that has exited
    assert claim(task)
    assert (task / "claimed").read_text() == str(os.getpid())
