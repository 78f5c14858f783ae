"""The GPU check script runs end to end at toy sizes on the CPU (so that the one command meant for a
GPU machine is known to work before a GPU is at hand) and prints every row of its table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
OPERATIONS = ["train step", "eap node", "eap edge", "eap-ig node m=5", "tracked SFT 2", "LoRA finetune 2"]


def test_gpu_check_script_prints_its_table_on_the_cpu(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", str(ROOT / "experiments" / "gpu_check.sh"), "--small", "--device", "cpu", "--steps", "2"],
        env={**os.environ, "PYTHON": sys.executable},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith(("llama3-8b-2l", "gpt2-small"))]
    assert len(rows) == 2 * len(OPERATIONS), done.stdout
    for model in ("llama3-8b-2l", "gpt2-small"):
        ops = [r[len(model) :].strip() for r in rows if r.startswith(model)]
        for operation, row in zip(OPERATIONS, ops, strict=True):
            assert row.startswith(operation), (operation, row)
            seconds, ratio, peak = map(float, row.split()[-3:])
            assert seconds > 0 and ratio > 0 and peak > 0
