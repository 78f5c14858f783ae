"""A quiet terminal: the Trainer's log dicts go to train_log.jsonl, never to stdout or stderr;
on a terminal a progress bar shows the step, the loss and the caller's figures."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from foresight.models import load_model
from foresight.sft import LOG_FILE, SFTConfig, TrainingLog, make_trainer
from foresight.tasks import get_task

CONFIG = SFTConfig(steps=4, batch_size=4, examples_per_task=16, warmup_steps=0)


def test_trainer_logs_go_to_the_log_file_not_the_terminal(
    tiny_model_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    model, tokenizer = load_model(tiny_model_dir)
    make_trainer(model, tokenizer, [get_task("ioi")], CONFIG, tmp_path).train()
    out, err = capfd.readouterr()
    assert "loss" not in out + err and "{" not in out + err, out + err
    logged = [json.loads(line) for line in (tmp_path / LOG_FILE).read_text().splitlines()]
    assert [entry["step"] for entry in logged if "loss" in entry] == [1, 2, 3, 4]


def test_the_progress_bar_shows_step_loss_and_status(tiny_model_dir: Path, tmp_path: Path) -> None:
    model, tokenizer = load_model(tiny_model_dir)
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100, color_system=None)
    bar = TrainingLog(tmp_path / "bar.jsonl", status=lambda: {"accuracy": 0.5}, console=console)
    make_trainer(model, tokenizer, [get_task("ioi")], CONFIG, tmp_path / "trainer", [bar]).train()
    shown = screen.getvalue()
    assert "4/4" in shown and "loss " in shown and "accuracy 0.500" in shown, shown
