"""The GPU check script runs end to end at toy sizes on the CPU (so that the one command meant for a
GPU machine is known to work before a GPU is at hand), prints every row of its table and its line
of versions, and keeps the caller's PYTHONPATH."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import peft
import torch
import transformers

ROOT = Path(__file__).parent.parent
OPERATIONS = ["train step", "eap node", "eap edge", "eap-ig node m=5", "eap-ig edge m=5"]
TRACKING = ["sft 4 steps", "track every 2", "track every 4", "checkpoint", "track fixed"]
TRACKING += ["LoRA finetune step", "LoRA finetune fixed"]
MEASURED = {"train step", "sft 4 steps", "track every 2", "track every 4", *OPERATIONS}


def test_gpu_check_script_prints_its_table_on_the_cpu(tmp_path: Path) -> None:
    script = ROOT / "experiments" / "gpu_check.sh"
    args = ["--small", "--device", "cpu", "--steps", "4", "--every", "2", "--finetune-steps", "2"]
    args += ["--shapes", "llama3-8b-2l"]  # the other shapes run the same code
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_TIMEOUT": "1200"}
    done = subprocess.run(["bash", str(script), *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=1300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    versions = lines[0].split()
    for name, module in (("torch", torch), ("transformers", transformers), ("peft", peft)):
        assert versions[versions.index(name) + 1] == module.__version__, lines[0]
    expected = {
        "llama3-8b-2l": OPERATIONS + TRACKING,
    }
    rows = [
        line
        for line in lines
        if line.split() and line.split()[0] in {*expected, "llama3-8b-32l", "gpt2-small"}
    ]
    assert len(rows) == sum(map(len, expected.values())), done.stdout
    for model, operations in expected.items():
        ops = [r[len(model) :].strip() for r in rows if r.split()[0] == model]
        for operation, row in zip(operations, ops, strict=True):
            assert row.startswith(operation), (operation, row)
            seconds, ratio, peak = row.split()[-3:]
            if operation in MEASURED:  # the others are differences of runs: of any sign at toy sizes
                assert float(seconds) > 0 and float(ratio) > 0, row
            if operation in MEASURED or operation == "LoRA finetune step":
                assert float(peak) > 0, row
            else:
                assert peak == "-", row


def test_gpu_check_keeps_the_callers_pythonpath(tmp_path: Path) -> None:
    """A package that only the caller's PYTHONPATH holds is importable by the script's python."""
    (tmp_path / "carried_only_here.py").write_text("")
    probe = tmp_path / "probe.sh"
    text = (ROOT / "experiments" / "gpu_check.sh").read_text()
    probe.write_text(text.replace('experiments/gpu_check.py "$@"', '-c "import carried_only_here"'))
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        ["bash", str(probe)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
