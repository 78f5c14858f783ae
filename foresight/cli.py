"""The `foresight` command line.

Every error a user can cause (bad input, unknown names, unreadable files)
is reported as one line on stderr with exit code 2; set FORESIGHT_DEBUG=1 to
see the traceback instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Track, forecast and steer the circuits of LLMs during fine-tuning.", no_args_is_help=True
)
console = Console()
err_console = Console(stderr=True)

USER_ERRORS = (ValueError, OSError, KeyError)


@app.command("tasks")
def tasks_command() -> None:
    """List the built-in tasks."""
    from foresight.tasks import get_task, task_names

    table = Table("task", "description", "example prompt", "answer")
    for name in task_names():
        task = get_task(name)
        example = task.eval_examples(1)[0]
        table.add_row(name, task.description, example.prompt, example.answer)
    console.print(table)


@app.command("evaluate")
def evaluate_command(
    model: str = typer.Option("default", help="'default', 'default-gpt2' or a model directory"),
    task: list[str] = typer.Option(None, help="task names or .jsonl files (default: all built-in)"),
    n: int = typer.Option(500, help="held-out examples per task"),
    seed: int = typer.Option(0),
) -> None:
    """Top-1 and two-way accuracy of a model on held-out task examples."""
    from foresight.evaluation import accuracy, choice_accuracy
    from foresight.models import load_model
    from foresight.tasks import get_task, task_names

    lm, tokenizer = load_model(model)
    table = Table("task", "top-1 accuracy", "two-way accuracy")
    for name in task or task_names():
        spec = get_task(name)
        top1 = accuracy(lm, tokenizer, spec.eval_examples(n, seed))
        two_way = choice_accuracy(lm, tokenizer, spec.attribution_pairs(n, seed))
        table.add_row(name, f"{top1:.3f}", f"{two_way:.3f}")
    console.print(table)


@app.command("sft")
def sft_command(
    task: list[str] = typer.Option(..., help="task names or .jsonl files"),
    model: str = typer.Option("default"),
    out: Path = typer.Option(..., help="directory for the fine-tuned model"),
    steps: int = typer.Option(200),
    lr: float = typer.Option(1e-3),
    batch_size: int = typer.Option(32),
    seed: int = typer.Option(0),
) -> None:
    """Plain SFT (no tracking) of a model on tasks; saves the fine-tuned model."""
    from foresight.models import load_model
    from foresight.sft import SFTConfig, make_trainer
    from foresight.tasks import get_task

    lm, tokenizer = load_model(model)
    config = SFTConfig(steps=steps, lr=lr, batch_size=batch_size, seed=seed)
    trainer = make_trainer(lm, tokenizer, [get_task(t) for t in task], config, out / "trainer")
    trainer.train()
    lm.save_pretrained(out)
    tokenizer.save_pretrained(out)
    console.print(f"fine-tuned model saved to {out}")


def main() -> None:
    """Entry point: runs the app, turning user errors into one line and exit 2."""
    if os.environ.get("FORESIGHT_DEBUG"):
        app()
        return
    try:
        app(standalone_mode=False)
    except typer.Abort:
        sys.exit(1)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except USER_ERRORS as err:
        err_console.print(f"[red]error:[/red] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
