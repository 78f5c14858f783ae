"""Checks of user input, run before a command writes anything (the CLI calls them): those that
need more than one settings record, the machine, files or a model (a single setting's range is
its record's own check, `foresight.config`).

Every check raises a ValueError or OSError whose message names the option or the file at
fault; nothing here writes, creates an MLflow store or loads model weights.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from foresight.graph import Graph
    from foresight.sweep import SweepConfig
    from foresight.tasks import Task
    from foresight.updater.config import FinetuneConfig

from foresight.config import LEVELS, MAX_SEED
from foresight.output_dirs import claim_sweep
from foresight.size_bounds import check_no_repeated_lines

_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.+=-]+")


def check_positive(**options: int | None) -> None:
    """Each option given (not None) is at least 1."""
    for name, value in options.items():
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, not {value}")


def check_seed(seed: int, option: str = "--seed") -> None:
    """Seeds are what numpy and torch accept: 0..2^32-1."""
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{option} {seed}: must be in 0..{MAX_SEED}")


def check_seeds(seeds: int) -> None:
    """`--seeds N` runs seeds 0..N-1: N at least 1, and N - 1 a seed."""
    check_positive(seeds=seeds)
    if seeds - 1 > MAX_SEED:
        raise ValueError(f"--seeds {seeds}: runs seeds 0..{seeds - 1}, but seeds end at {MAX_SEED}")


def check_choice(option: str, value: str, choices: Sequence[str]) -> None:
    """`value` is one of `choices`."""
    if value not in choices:
        raise ValueError(f"{option} {value!r}: choose from {', '.join(choices)}")


def check_placement(dtype: str, device: str, mode: str | None = None) -> None:
    """`--dtype` is a `foresight.models.DTYPES` name (float16 not with `mode` full: float16
    weights train only through LoRA's float32 adapters) and `--device` one this machine has."""
    from foresight.models import DTYPES, check_device

    check_choice("--dtype", dtype, list(DTYPES))
    if dtype == "float16" and mode == "full":
        raise ValueError("--dtype float16: trains only with --mode lora; use bfloat16 for full training")
    check_device(device, "--device")


def check_method(method: str, level: str = "node") -> None:
    """An attribution method and level that `foresight.attribution` knows."""
    from foresight.attribution.methods import METHODS

    check_choice("--method", method, METHODS.names())
    check_choice("--level", level, LEVELS)


def check_every(every: int, steps: int) -> None:
    """A checkpoint cadence that takes a checkpoint after step 0."""
    if every > steps:
        raise ValueError(f"--every {every} is larger than --steps {steps}: no checkpoint after step 0")


def check_run_name(name: str | None) -> None:
    """A run directory name that stays inside --out: letters, digits and _ . + = -, not . or .."""
    if name is not None and (not _PLAIN_NAME.fullmatch(name) or name in (".", "..")):
        raise ValueError(f"--name {name!r}: must be a plain directory name (no '/', not '.' or '..')")


def check_out_dir(option: str, path: Path) -> None:
    """Fail before any work if directory `path` can be neither created nor written."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"{option} {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"{option} {path}: {existing} is not writable")


def check_empty_out(option: str, path: Path, what: str) -> None:
    """`path` is missing or an empty directory (so a new `what` replaces nothing)."""
    if path.is_dir() and any(path.iterdir()):
        raise FileExistsError(f"{option} {path}: holds a {what} already (choose another {option})")


def check_k(option: str, k: int, model: str, graph: Graph, what: str = "heads and MLPs") -> None:
    """ValueError unless 1 <= k <= the number of heads and MLPs (or "nodes", "edges") of the graph."""
    counts = {"nodes": len(graph.node_names()), "edges": len(graph.edge_labels())}
    n = counts.get(what, len(graph.member_names()))
    if not 1 <= k <= n:
        raise ValueError(f"{option} {k}: must be in 1..{n} (the {what} of model {model!r})")


def check_tasks(names: Sequence[str], model: str) -> list[Task]:
    """The tasks by name or .jsonl path, each name once; JSONL tasks are checked against the
    model (token lengths, known words, single-token answers, the context length; errors
    name file:line, the task and the model)."""
    from foresight.model_files import context_length
    from foresight.models import load_tokenizer
    from foresight.tasks import JsonlTask, get_task

    tasks = [get_task(name) for name in names]
    seen: dict[str, str] = {}
    for name, task in zip(names, tasks, strict=True):
        if task.name in seen:
            raise ValueError(
                f"--task {name}: a second task named {task.name!r} (the first: {seen[task.name]})"
            )
        seen[task.name] = name
    check_no_repeated_lines(tasks)
    if any(isinstance(task, JsonlTask) for task in tasks):
        tokenizer = load_tokenizer(model)
        limit = context_length(model)
        for task in tasks:
            if isinstance(task, JsonlTask):
                task.validate(tokenizer, model=model, max_tokens=limit)
    return tasks


def check_forecaster(
    forecaster: Path | None, strategies: Sequence[str], model: str, graph: Graph
) -> int | None:
    """A strategy that forecasts needs a forecaster of the model's graph: checked before training.
    Returns the forecaster's default warm-up (its prefix + 1), None without a forecaster."""
    from foresight.updater.strategies import forecasting_strategies, strategy_class
    from predictors.base import check_graph
    from predictors.persist import load_forecaster
    from predictors.strategies import Predictive  # noqa: F401  (registers the forecasting strategies)

    for strategy in strategies:
        strategy_class(strategy)
    forecasting = forecasting_strategies()
    if forecaster is None:
        if any(s in forecasting for s in strategies):
            raise ValueError(f"strategies {', '.join(forecasting)} need --forecaster")
        return None

    loaded = load_forecaster(forecaster)
    check_graph(loaded.graph, graph, f"--forecaster {forecaster} on model {model!r}")
    return loaded.problem.prefix + 1


def check_update(task: str, strategies: Sequence[str], config: FinetuneConfig, out: Path) -> FinetuneConfig:
    """The checks `finetune` and `compare` share beyond `config`'s own, in the order they fail:
    the device, the model, K, the forecaster against the model's graph, re-selections that would
    never happen, the output directory,
    the task. Returns `config` with the forecaster's default warm-up (`check_forecaster`) where
    it sets none."""
    from foresight.models import check_device
    from foresight.updater.strategies import checked_strategy

    check_device(config.device, "--device")
    graph = checked_graph(config.model)
    check_k("--components", config.components, config.model, graph)
    forecaster = None if config.forecaster is None else Path(config.forecaster)
    warmup = check_forecaster(forecaster, strategies, config.model, graph)
    for strategy in strategies:
        checked_strategy(strategy, config.every, config.steps)
    check_out_dir("--out", out)
    check_tasks([task], config.model)
    return replace(config, warmup_checkpoints=config.warmup_checkpoints or warmup)


def check_ray() -> None:
    """Ray (the optional extra `ray`) is installed."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ValueError(
            "sweeps run on Ray, which is not installed: pip install 'foresight-circuits[ray]'"
        ) from None


def check_sweep(path: Path) -> SweepConfig:
    """A sweep config file (`foresight.sweep.SweepConfig.from_file`), then, as `compare` checks
    them, the model, K, and for each task the forecaster and the task, and `out`."""
    from foresight.sweep import SweepConfig
    from foresight.updater.strategies import forecasting_strategies
    from predictors.strategies import Predictive  # noqa: F401  (registers the forecasting strategies)

    config = SweepConfig.from_file(path)
    forecasting = forecasting_strategies()
    settings, strategies = config.finetune, config.strategies
    check_out_dir(f"{path}: out", config.out)
    claim_sweep(f"{path}: out", config.out, config.tasks, config.experiment)
    graph = checked_graph(settings.model)
    check_k(f"{path}: finetune.components", settings.components, settings.model, graph)
    for task in config.tasks:
        forecaster = config.settings(task).forecaster
        if forecaster is None and any(s in forecasting for s in strategies):
            raise ValueError(f"{path}: strategies {', '.join(forecasting)} need finetune.forecaster "
                             f"or forecasters.{task}")  # fmt: skip
        try:
            check_forecaster(
                None if forecaster is None else Path(forecaster), strategies, settings.model, graph
            )
            check_tasks([task], settings.model)
        except (ValueError, OSError) as e:
            raise type(e)(f"{path}: {e}") from None
    return config


def checked_graph(model: str, attribution: bool = True) -> Graph:
    """`foresight.model_files.checked_graph`: the model's graph after checking its files."""
    from foresight.model_files import checked_graph as graph

    return graph(model, attribution)
