"""Checks of user input, run before a command writes anything (the CLI calls them).

Every check raises a ValueError or OSError whose message names the option or the file at
fault; nothing here writes, creates an MLflow store or loads model weights.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedTokenizerBase

    from foresight.graph import Graph
    from foresight.sweep import SweepConfig
    from foresight.tasks import Task

MAX_SEED = 2**32 - 1
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.+=-]+")


class ModelFileError(ValueError):
    """A model directory whose files cannot make the model its config describes."""


def check_positive(**options: int | None) -> None:
    """Each option given (not None) is at least 1."""
    for name, value in options.items():
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, not {value}")


def check_lr(lr: float | None) -> None:
    """A learning rate given (not None) is a finite number above 0."""
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"--lr {lr}: must be a finite number above 0")


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
    from foresight.attribution.api import LEVELS, METHODS

    check_choice("--method", method, METHODS)
    check_choice("--level", level, LEVELS)


def check_mode(mode: str) -> None:
    """ValueError unless `mode` is an update mode (lora, full)."""
    from foresight.updater.config import DEFAULT_LR

    check_choice("--mode", mode, list(DEFAULT_LR))


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


def _safetensors_keys(file: Path) -> set[str]:
    """The tensor names of a safetensors file; ModelFileError if its header is unreadable or
    the file is shorter or longer than the header says (a truncated download)."""
    try:
        with file.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n)) if n < file.stat().st_size else None
    except (OSError, struct.error, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{file}: unreadable safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{file}: unreadable safetensors header (truncated)")
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    expected = 8 + n + max(ends, default=0)
    if file.stat().st_size != expected:
        raise ModelFileError(
            f"{file}: {file.stat().st_size} bytes, its header describes {expected} (truncated?)"
        )
    return {k for k in header if k != "__metadata__"}


def _weight_keys(path: Path) -> set[str] | None:
    """The parameter names stored in a model directory (None for pytorch_model.bin, whose
    names need unpickling; it is checked to be a complete zip archive)."""
    index = path / "model.safetensors.index.json"
    if (path / "model.safetensors").is_file():
        return _safetensors_keys(path / "model.safetensors")
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise ModelFileError(f"{index}: unreadable weight index ({e})") from None
        keys: set[str] = set()
        for shard in shards:
            if not (path / shard).is_file():
                raise ModelFileError(f"{index}: names shard {shard}, which is missing")
            keys |= _safetensors_keys(path / shard)
        return keys
    if not zipfile.is_zipfile(path / "pytorch_model.bin"):
        raise ModelFileError(f"{path / 'pytorch_model.bin'}: not a complete torch archive (truncated?)")
    return None


def _check_weights_cover(path: Path, config: PretrainedConfig, stored: set[str]) -> None:
    """Every parameter of the model that `config` describes is stored (tied ones may be left out)."""
    from foresight.models import meta_skeleton

    skeleton = meta_skeleton(config)
    tied = getattr(skeleton, "_tied_weights_keys", None) or {}
    tied = tied if isinstance(tied, dict) else dict.fromkeys(tied)
    missing = sorted(
        key
        for key in skeleton.state_dict()
        if key not in stored and not (key in tied and (tied[key] is None or tied[key] in stored))
    )
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ModelFileError(f"model directory {path}: no weights for {shown} (config.json describes more)")


def model_graph(model: str, attribution: bool = True) -> Graph:
    """The graph of `model`, read from its config.json (`foresight.models.model_graph`), after
    checking its files: a tokenizer, weights that are complete (safetensors sizes, a complete
    pytorch_model.bin) and that cover every parameter the config describes. No weights are loaded.

    ModelLoadError / ModelFileError if the directory, its config, tokenizer or weights are
    missing or broken, or its model_type is no causal LM that transformers knows (or, with
    `attribution`, one without an architecture in the registry)."""
    from transformers import AutoConfig

    from foresight.models import model_graph as config_graph
    from foresight.models import resolve_model_path

    graph = config_graph(model, attribution)
    path = resolve_model_path(model)
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise ModelFileError(f"model directory {path}: no tokenizer ({' or '.join(TOKENIZER_FILES)})")
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    stored = _weight_keys(path)
    if stored is not None:
        _check_weights_cover(path, config, stored)
    return graph


def context_length(model: str) -> int | None:
    """The most positions the model takes (None if its config does not say)."""
    from transformers import AutoConfig

    from foresight.models import resolve_model_path

    config = AutoConfig.from_pretrained(resolve_model_path(model), local_files_only=True)
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


def check_tasks(names: Sequence[str], model: str) -> list[Task]:
    """The tasks by name or .jsonl path, each name once; JSONL tasks are checked against the
    model (token lengths, known words, single-token answers, the context length; errors
    name file:line, the task and the model)."""
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
    if any(isinstance(task, JsonlTask) for task in tasks):
        tokenizer = load_tokenizer(model)
        limit = context_length(model)
        for task in tasks:
            if isinstance(task, JsonlTask):
                task.validate(tokenizer, model=model, max_tokens=limit)
    return tasks


def prompt_tokens(tokenizer: PreTrainedTokenizerBase, tasks: Sequence[Task], n: int = 64) -> int:
    """The longest attribution prompt, in tokens, among `n` pairs of each task."""
    from foresight.encoding import prompt_ids

    return max(len(prompt_ids(tokenizer, p.clean)) for task in tasks for p in task.attribution_pairs(n))


def available_memory() -> int:
    """Bytes of memory available to a new allocation (MemAvailable, else physical memory)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def attribution_bytes(model: str, n_pairs: int, tokens: int) -> int:
    """An upper estimate of the memory that one attribution pass over `n_pairs` pairs of
    `tokens` tokens takes (all pairs at once, as the tracker runs them): per pair and token,
    the clean and corrupted activations of every node with their gradients, the forward's
    intermediates (attention weights, MLP hidden states) kept for the backward, and the logits.
    Measured on the default model (edge-level eap with the runs kept, peak RSS growth): 385 MiB
    for 256 ioi pairs and 1.31 GiB for 1024, where this says 0.78 and 3.1 GiB; the margin
    covers the rest of a checkpoint (gradients, faithfulness, the background model copy)."""
    from transformers import AutoConfig

    from foresight.models import resolve_model_path

    c = AutoConfig.from_pretrained(resolve_model_path(model), local_files_only=True)
    d, layers, heads = c.hidden_size, c.num_hidden_layers, c.num_attention_heads
    inner = getattr(c, "intermediate_size", None) or getattr(c, "n_inner", None) or 4 * d
    nodes = layers * (heads + 1) + 2
    per_token = 2 * (3 * nodes * d + layers * (3 * heads * tokens + 3 * inner + 8 * d) + 3 * c.vocab_size)
    return 4 * n_pairs * tokens * per_token


def check_n_pairs(n_pairs: int, model: str, tasks: Sequence[Task]) -> None:
    """Refuse `--n-pairs` whose attribution pass would not fit in the available memory."""
    from foresight.models import load_tokenizer

    need = attribution_bytes(model, n_pairs, prompt_tokens(load_tokenizer(model), tasks))
    have = available_memory()
    if need > have:
        raise ValueError(
            f"--n-pairs {n_pairs}: attribution would need about {need / 2**30:.1f} GiB, "
            f"{have / 2**30:.1f} GiB are available"
        )


def check_forecaster(
    forecaster: Path | None, strategies: Sequence[str], model: str, graph: Graph
) -> int | None:
    """A strategy that forecasts needs a forecaster of the model's graph: checked before training.
    Returns the forecaster's default warm-up (its prefix + 1), None without a forecaster."""
    from foresight.updater.strategies import FORECASTING, STRATEGIES

    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategy {unknown[0]!r}; choose from {', '.join(STRATEGIES)}")
    if forecaster is None:
        if any(s in FORECASTING for s in strategies):
            raise ValueError(f"strategies {', '.join(FORECASTING)} need --forecaster")
        return None
    from predictors.base import check_graph
    from predictors.persist import load_forecaster

    loaded = load_forecaster(forecaster)
    check_graph(loaded.graph, graph, f"--forecaster {forecaster} on model {model!r}")
    return loaded.problem.prefix + 1


def check_update(
    task: str,
    strategies: Sequence[str],
    model: str,
    components: int,
    mode: str,
    forecaster: Path | None,
    out: Path,
    lr: float | None,
) -> int | None:
    """The checks `finetune` and `compare` share, in the order they fail: mode, lr, model, K,
    the forecaster against the model's graph, the output directory, the task. Returns the
    forecaster's default warm-up (`check_forecaster`)."""
    check_mode(mode)
    check_lr(lr)
    graph = model_graph(model)
    check_k("--components", components, model, graph)
    warmup = check_forecaster(forecaster, strategies, model, graph)
    check_out_dir("--out", out)
    check_tasks([task], model)
    return warmup


def check_ray() -> None:
    """Ray (the optional extra `ray`) is installed."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ValueError(
            "sweeps run on Ray, which is not installed: pip install 'foresight-circuits[ray]'"
        ) from None


SWEEP_KEYS = ("experiment", "tasks", "strategies", "seeds", "finetune", "out", "forecasters", "retries")
# the type a FinetuneConfig field's annotation asks for in a config file (None: key left out)
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "int": int, "int | None": int, "float | None": (int, float), "str": str, "Mode": str,
    "str | None": str, "bool": bool,
}  # fmt: skip


def _names(path: Path, key: str, value: object) -> list[str]:
    """A non-empty list of distinct non-empty strings."""
    if not (isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)):
        raise ValueError(f"{path}: {key} must be a non-empty list of names, not {value!r}")
    if len(set(value)) < len(value):
        raise ValueError(f"{path}: {key} lists a name twice: {value!r}")
    return value


def _finetune_settings(path: Path, table: object) -> dict[str, object]:
    """The `finetune` table: FinetuneConfig fields (not strategy or seed) of the right types."""
    from dataclasses import fields

    from foresight.updater.config import FinetuneConfig

    if not isinstance(table, dict):
        raise ValueError(f"{path}: finetune must be a table of FinetuneConfig settings, not {table!r}")
    kinds = {f.name: f.type for f in fields(FinetuneConfig) if f.name not in ("strategy", "seed")}
    for key, value in table.items():
        if key not in kinds:
            raise ValueError(f"{path}: finetune.{key}: unknown setting; choose from {', '.join(kinds)}")
        wanted = _FIELD_TYPES[str(kinds[key])]
        if not isinstance(value, wanted) or (isinstance(value, bool) and wanted is not bool):
            raise ValueError(f"{path}: finetune.{key} {value!r}: must be of type {kinds[key]}")
    return table


def check_sweep(path: Path) -> SweepConfig:
    """A sweep config file (`.toml` or `.json`): its keys (SWEEP_KEYS; experiment, tasks,
    strategies and seeds required), their types, the FinetuneConfig settings, and for each task
    the model, K, the forecaster and the task as `compare` checks them, and `out`. Returns the
    `foresight.sweep.SweepConfig`."""
    import tomllib

    from foresight.sweep import SweepConfig
    from foresight.updater.config import FinetuneConfig
    from foresight.updater.strategies import FORECASTING

    if path.suffix not in (".toml", ".json"):
        raise ValueError(f"{path}: a sweep config is a .toml or .json file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid {path.suffix[1:].upper()} ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must hold a table of settings, not {type(data).__name__}")
    unknown = [k for k in data if k not in SWEEP_KEYS]
    if unknown:
        raise ValueError(f"{path}: unknown key {unknown[0]!r}; choose from {', '.join(SWEEP_KEYS)}")
    missing = [k for k in SWEEP_KEYS[:4] if k not in data]
    if missing:
        raise ValueError(f"{path}: missing key {missing[0]!r}")
    experiment = data["experiment"]
    if not (isinstance(experiment, str) and experiment.strip()):
        raise ValueError(f"{path}: experiment must be a non-empty name, not {experiment!r}")
    tasks, strategies = _names(path, "tasks", data["tasks"]), _names(path, "strategies", data["strategies"])
    seeds = data["seeds"]
    if not (isinstance(seeds, list) and seeds and all(type(s) is int for s in seeds)):
        raise ValueError(f"{path}: seeds must be a non-empty list of integers, not {seeds!r}")
    for seed in seeds:
        check_seed(seed, f"{path}: seeds:")
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"{path}: seeds lists a seed twice: {seeds!r}")
    retries = data.get("retries", 2)
    if type(retries) is not int or retries < 0:
        raise ValueError(f"{path}: retries must be an integer of at least 0, not {retries!r}")
    out = data.get("out", f"runs/sweep-{experiment}")
    if not (isinstance(out, str) and out):
        raise ValueError(f"{path}: out must be a directory path, not {out!r}")
    forecasters = data.get("forecasters", {})
    if not (isinstance(forecasters, dict) and all(isinstance(v, str) for v in forecasters.values())):
        raise ValueError(f"{path}: forecasters must be a table of task = forecaster directory")
    stray = [t for t in forecasters if t not in tasks]
    if stray:
        raise ValueError(f"{path}: forecasters.{stray[0]}: not one of the tasks")
    try:
        settings = FinetuneConfig(**_finetune_settings(path, data.get("finetune", {})))
        for strategy in strategies:
            settings.with_run(strategy, seeds[0])
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    config = SweepConfig(
        experiment, tuple(tasks), tuple(strategies), tuple(seeds), settings, Path(out), forecasters, retries
    )
    check_out_dir(f"{path}: out", config.out)
    graph = model_graph(settings.model)
    check_k(f"{path}: finetune.components", settings.components, settings.model, graph)
    for task in tasks:
        forecaster = config.settings(task).forecaster
        if forecaster is None and any(s in FORECASTING for s in strategies):
            raise ValueError(f"{path}: strategies {', '.join(FORECASTING)} need finetune.forecaster "
                             f"or forecasters.{task}")  # fmt: skip
        try:
            check_forecaster(
                None if forecaster is None else Path(forecaster), strategies, settings.model, graph
            )
            check_tasks([task], settings.model)
        except (ValueError, OSError) as e:
            raise type(e)(f"{path}: {e}") from None
    return config
