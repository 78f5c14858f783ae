"""A tracked SFT run: transformers Trainer + `CircuitTracker` + MLflow.

A run directory holds `run.json` (the MLflow run id, tracking URI and run settings),
`.lock` (held, with an OS file lock, by the process that runs in it),
`trajectories/{task}/` (one trajectory per tracked task), `model/` (with `save_model`: the
fine-tuned model, safetensors, and its tokenizer, at the end), `trainer/` (Trainer
checkpoints, for `--resume`), `figures/` and, if the tracking server went away,
`pending_mlflow.jsonl` for `foresight sync`.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import mlflow
import torch

from foresight import distributed
from foresight.architectures import graph_of
from foresight.figures import head_score_matrix, log_figures
from foresight.jsonfile import read_json_object
from foresight.mlflow_log import (
    SafeLogger,
    check_store,
    ended,
    get_or_create_experiment,
    open_run,
    resolve_tracking_uri,
)
from foresight.mlflow_ui import TrackedRunLogger, describe_tracked_run, set_description
from foresight.models import available_memory, load_model
from foresight.sft import SFTConfig, apply_lora, make_trainer
from foresight.sft_data import SFTData, log_training_data
from foresight.tasks import JsonlTask, Task, get_task
from foresight.tracking_uri import check_tracking_uri
from foresight.updater.config import FinetuneConfig
from foresight.updater.finetune import finetune, sft_config
from trackers.manifest import Manifest
from trackers.probe import write_probe
from trackers.store import load_trajectory
from trackers.tracker import EXPERIMENT, CircuitTracker, TrackerSettings

RUN_FILE = "run.json"
LOCK_FILE = ".lock"
MODEL_DIR = "model"
TRACKING_COPY = ("auto", "on", "off")  # `track(tracking_copy=...)`: see its docstring
SAVE_EVERY_CHECKPOINTS = 10  # a resumed run replays at most this many tracking intervals


class RunDirError(ValueError):
    """A run directory that cannot be used as asked (exists without --resume, or the reverse)."""


@dataclass(frozen=True)
class TrackedRun:
    """Where a finished tracked run put its results."""

    run_dir: Path
    run_id: str
    experiment_id: str
    tracking_uri: str
    tracker: CircuitTracker | None  # None on ranks other than 0


def _last_complete_checkpoint(trainer_dir: Path) -> str | None:
    """The newest Trainer checkpoint that was completely written (a kill during a save
    leaves one without trainer_state.json)."""
    complete = [d for d in trainer_dir.glob("checkpoint-*") if (d / "trainer_state.json").is_file()]
    return str(max(complete, key=lambda d: int(d.name.split("-")[1]))) if complete else None


@dataclass(frozen=True)
class RunRecord:
    """`run.json` of a run directory: the MLflow run (`run_id`) and where it logs
    (`tracking_uri`), with the run's `settings` (sft, tracker, tasks, model, train_data) beside
    them; `finished` once the run trained to its last step (`_mark_finished`)."""

    run_id: str
    tracking_uri: str
    settings: dict[str, Any] = field(default_factory=dict)
    finished: bool = False

    @classmethod
    def read(cls, run_dir: Path) -> RunRecord:
        """The record of `run_dir`; RunDirError if it is unreadable or lacks run_id or tracking_uri."""
        file = run_dir / RUN_FILE
        record = read_json_object(file, "run record", RunDirError)
        run_id, uri = record.pop("run_id", None), record.pop("tracking_uri", None)
        if not (isinstance(run_id, str) and isinstance(uri, str)):
            raise RunDirError(f"{file}: run record without run_id and tracking_uri")
        return cls(run_id, uri, record, record.pop("finished", False) is True)

    def write(self, run_dir: Path) -> None:
        """Write `run_dir/run.json` (atomically: a crash leaves the old record or the new one)."""
        record = {"run_id": self.run_id, "tracking_uri": self.tracking_uri, **self.settings}
        if self.finished:
            record["finished"] = True
        partial = run_dir / f"{RUN_FILE}.partial"
        partial.write_text(json.dumps(record, indent=2))
        os.replace(partial, run_dir / RUN_FILE)


def finished(run_dir: Path) -> bool:
    """Whether the run in `run_dir` trained to its last step (its run record says so)."""
    try:
        return RunRecord.read(run_dir).finished
    except RunDirError:
        return False


def _mark_finished(run_dir: Path) -> None:
    """Record in `run.json` that the run trained to its last step."""
    replace(RunRecord.read(run_dir), finished=True).write(run_dir)


def _read_record(run_dir: Path) -> RunRecord:
    """The run record of a run to resume; RunDirError if there is none, it is unreadable, or
    the run finished (resuming it would train past its last step)."""
    if not (run_dir / RUN_FILE).is_file():
        raise RunDirError(f"{run_dir}: nothing to resume (no {RUN_FILE})")
    record = RunRecord.read(run_dir)
    if record.finished:
        raise RunDirError(
            f"{run_dir}: the run finished: nothing to resume; track into another --name to train again"
        )
    return record


def _check_same_data(record: RunRecord, train_data: SFTData | None, run_dir: Path) -> None:
    """RunDirError unless a resumed run trains on the data it started with (same digest)."""
    described = record.settings.get("train_data") or {}
    recorded = described.get("digest")
    given = None if train_data is None else train_data.digest
    if recorded != given:
        was = f"--train-data {described['path']} (digest {recorded})" if recorded else None
        now = f"--train-data {train_data.path} (digest {given})" if given else None
        tasks = "the tasks' own examples"
        raise RunDirError(f"{run_dir}: started on {was or tasks}, resumed on {now or tasks}")


def _claim(run_dir: Path, resume: bool) -> int:
    """Take the run directory for this process: an exclusive, non-blocking flock on its `.lock`
    (released when the process ends, however it ends); returns the lock's file descriptor.
    Under the lock it checks that the directory fits the request (a new run finds no
    `run.json`), so of two runs started into one directory at once exactly one proceeds.
    A new run's directory is created; nothing is created for a refused one."""
    if not resume and (run_dir / RUN_FILE).exists():
        raise RunDirError(f"{run_dir}: holds a run already (pass --resume to continue it)")
    run_dir.mkdir(parents=True, exist_ok=True)
    if not os.access(run_dir, os.W_OK):
        raise RunDirError(f"{run_dir}: not writable")
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunDirError(f"{run_dir}: another foresight track is running in it") from None
    if not resume and (run_dir / RUN_FILE).exists():  # written by a run that held the lock before
        os.close(fd)
        raise RunDirError(f"{run_dir}: holds a run already (pass --resume to continue it)")
    return fd


def tracking_copy_fits(model: torch.nn.Module) -> bool:
    """Whether a second copy of `model`'s weights fits in the free memory of its device with
    room to spare (free memory at least twice the weights: the copy and its attribution pass)."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    device = next(model.parameters()).device
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else available_memory()
    return 2 * weights <= free


def track(
    tasks: Sequence[str],
    run_dir: Path,
    model: str = "default",
    sft: SFTConfig = SFTConfig(),
    settings: TrackerSettings = TrackerSettings(),
    resume: bool = False,
    experiment: str = EXPERIMENT,
    save_every: int | None = None,
    tracking_copy: str = "auto",
    train_data: SFTData | None = None,
    save_model: bool = False,
) -> TrackedRun:
    """Fine-tune `model` on `tasks` with the circuits of every task tracked.

    The training data are the tasks' own examples, or `train_data` (checked and tokenized by
    `foresight.sft_data`; its description goes to every manifest and run.json, and the data to
    the MLflow run's inputs). `sft.mode` lora trains PEFT adapters, and the tracker
    attributes the adapted model.

    The tracking server (MLFLOW_TRACKING_URI; else, with `resume`, the URI that `run.json`
    recorded; else ./mlflow.db) is checked before anything is written, so an unreachable one
    fails fast. The run directory is claimed with a file lock (a second run into it fails).
    The MLflow run is RUNNING while the model trains and ends FINISHED, FAILED (an error)
    or KILLED (Ctrl-C). With `resume`, the Trainer continues from its last checkpoint
    and the tracker and MLflow run continue the same trajectories and run id.
    With `tracking_copy` on, checkpoints are taken in the background, on a copy of the model,
    while training goes on; off, training waits for each checkpoint; auto (the default): on
    when the copy fits (`tracking_copy_fits`). With `save_model`, the fine-tuned model and its
    tokenizer are saved (`save_pretrained`, safetensors) to `run_dir/model` at the end.
    Trainer checkpoints (what `resume` restarts from) are saved every `save_every`
    steps (default: every `SAVE_EVERY_CHECKPOINTS`th tracking checkpoint of an evenly
    spaced cadence, else none). A resumed run replays the steps after its last Trainer
    checkpoint; their tracking checkpoints, already written, are not taken again.

    Under torchrun / accelerate launch (`foresight.distributed`) every rank trains on its
    share of each global batch of `sft.batch_size` x ranks; rank 0 alone checks the server,
    claims the directory, tracks (attributes every checkpoint on its own copy of the weights,
    which DDP keeps equal on every rank) and writes; the other ranks return with `tracker` None.
    """
    if tracking_copy not in TRACKING_COPY:
        raise ValueError(f"tracking_copy {tracking_copy!r}: choose from {', '.join(TRACKING_COPY)}")
    distributed.start(sft.device)
    main = distributed.is_main()
    record = _read_record(run_dir) if resume else None
    if record is not None:
        _check_same_data(record, train_data, run_dir)
    uri = os.environ.get("MLFLOW_TRACKING_URI") or (record and record.tracking_uri) or resolve_tracking_uri()
    lock, refused = None, None
    if main:
        try:
            check_tracking_uri(uri)
            if record is not None:
                check_store(uri)
            lock = _claim(run_dir, resume)
        except (ValueError, OSError) as e:
            refused = e
    if distributed.broadcast(refused is not None):
        if main:
            raise refused
        raise SystemExit(2)  # rank 0 says why
    try:
        torch.manual_seed(sft.seed)
        lm, tokenizer = load_model(model, sft.dtype, sft.device)
        lm = apply_lora(lm, sft)
        task_objects = [get_task(t) for t in tasks]
        for task in task_objects:
            if isinstance(task, JsonlTask):
                task.validate(tokenizer, model=model)
        if not main:
            run_id, experiment_id = distributed.broadcast(None)
            _train(
                run_dir, model, lm, tokenizer, task_objects, sft, settings, resume, None, save_every,
                save_model=save_model, train_data=train_data,
            )  # fmt: skip
            return TrackedRun(run_dir, run_id, experiment_id, uri, None)
        background = tracking_copy == "on" or (tracking_copy == "auto" and tracking_copy_fits(lm))
        mlflow.set_tracking_uri(uri)
        experiment_id = get_or_create_experiment(experiment)
        run_id = _open_run(run_dir, record, uri, experiment, model, tasks, sft, settings, train_data)
        distributed.broadcast((run_id, experiment_id))
        logger = TrackedRunLogger(run_id, run_dir)
        if record is None:
            set_description(logger, describe_tracked_run(tasks))
            if train_data is not None:
                log_training_data(train_data, logger)
        with ended(logger):
            tracker = _train(
                run_dir, model, lm, tokenizer, task_objects, sft, settings, resume, logger, save_every,
                save_model, background, train_data,
            )  # fmt: skip
            _mark_finished(run_dir)
    finally:
        if lock is not None:
            os.close(lock)
    return TrackedRun(run_dir, run_id, experiment_id, uri, tracker)


def _open_run(
    run_dir: Path,
    record: RunRecord | None,
    uri: str,
    experiment: str,
    model: str,
    tasks: Sequence[str],
    sft: SFTConfig,
    settings: TrackerSettings,
    train_data: SFTData | None = None,
) -> str:
    """Open (or, with a `record`, reopen) the MLflow run with its params; a new run's record
    goes to `run.json`. Returns the run id."""
    params = {"model": model, "tasks": ",".join(tasks), "seed": sft.seed, "lr": sft.lr}
    params |= {"steps": sft.steps, "batch_size": sft.batch_size, "every": settings.every}
    if sft.grad_accum != 1 or sft.mode != "full":
        params |= {"grad_accum": sft.grad_accum, "mode": sft.mode}
    if sft.mode == "lora":
        params |= {"lora_rank": sft.lora_rank, "lora_targets": ",".join(sft.lora_targets or ["default"])}
    if train_data is not None:
        params |= {"train_data": str(train_data.path), "train_data_digest": train_data.digest}
    params |= {"dtype": sft.dtype, "device": sft.device, "processes": distributed.world_size()}
    params |= {"method": settings.method, "circuit_size": settings.circuit_size, "n_pairs": settings.n_pairs}
    run_id = open_run(experiment, run_dir.name, params=params, run_id=record and record.run_id)
    if record is None:
        config = {"sft": asdict(sft), "tracker": asdict(settings), "tasks": list(tasks), "model": model}
        if train_data is not None:
            config["train_data"] = train_data.describe()
        RunRecord(run_id, uri, config).write(run_dir)
    return run_id


def _accuracy(tracker: CircuitTracker) -> dict[str, float]:
    """The held-out accuracy at the last checkpoint, mean over the tracked tasks (for the progress bar)."""
    latest = {k: v for entry in list(tracker.history) for k, v in entry.items() if k.endswith("/accuracy")}
    return {"accuracy": sum(latest.values()) / len(latest)} if latest else {}


def _train(
    run_dir: Path,
    model: str,
    lm: torch.nn.Module,
    tokenizer: object,
    task_objects: Sequence[Task],
    sft: SFTConfig,
    settings: TrackerSettings,
    resume: bool,
    logger: SafeLogger | None,
    save_every: int | None,
    save_model: bool = False,
    background: bool = False,
    train_data: SFTData | None = None,
) -> CircuitTracker | None:
    """The tracked training of `track`, with its figures and trajectories logged through `logger`;
    without a logger (a rank other than 0), the same training untracked. If training fails, the
    checkpoints already taken are still written (`CircuitTracker.drain`)."""
    tracker = None
    if logger is not None:
        manifest = Manifest.of_sft(
            logger.run_id, model, sft, None if train_data is None else train_data.describe()
        )
        tracker = CircuitTracker(
            task_objects, tokenizer, graph_of(lm), run_dir / "trajectories", manifest, settings, logger,
            resume, background=background,
        )  # fmt: skip
    save_steps = save_every or (SAVE_EVERY_CHECKPOINTS * settings.every if settings.steps is None else None)
    trainer = make_trainer(
        lm,
        tokenizer,
        task_objects,
        sft,
        run_dir / "trainer",
        [] if tracker is None else [tracker],
        save_steps=save_steps,
        status=None if tracker is None else lambda: _accuracy(tracker),
        train_data=None if train_data is None else train_data.dataset,
    )
    last = _last_complete_checkpoint(run_dir / "trainer") if resume else None
    try:
        trainer.train(resume_from_checkpoint=last)
    except BaseException:
        if tracker is not None:
            tracker.drain()
        raise
    if tracker is None:
        return None
    if save_model:  # rank 0 only: the weights are the same on every rank
        lm.save_pretrained(run_dir / MODEL_DIR)
        tokenizer.save_pretrained(run_dir / MODEL_DIR)
    for task in task_objects:
        frame = tracker.metrics_frame(task.name)
        if len(frame):
            heads = head_score_matrix(load_trajectory(run_dir / "trajectories" / task.name))
            log_figures(logger, frame, run_dir / "figures" / task.name, heads, f"figures/{task.name}")
    logger.log_artifact(run_dir / "trajectories", "trajectories")
    return tracker


def track_finetune(task: str, config: FinetuneConfig, run_dir: Path, settings: TrackerSettings) -> Path:
    """One strategy run (`foresight.updater.finetune`: e.g. masked LoRA under the static set, the
    forecasting strategies' warm-up regime) tracked by `CircuitTracker` as a Trainer callback, then
    the probe fine-tune of the `anticipate` baseline with the run's SFT settings (as the forecasting
    strategies write theirs). The trajectory (regime: the config's mode, strategy and lr) goes to
    `{run_dir}/trajectories/{task}`, which is returned; no MLflow run."""
    task_object = get_task(task)
    model, tokenizer = load_model(config.model, config.dtype, config.device)
    manifest = Manifest.of_finetune(f"{task}-{config.mode}-{config.strategy}-s{config.seed}", config)
    tracker = CircuitTracker(
        [task_object], tokenizer, graph_of(model), run_dir / "trajectories", manifest, settings
    )
    finetune(task_object, config, run_dir / "finetune", callbacks=[tracker])
    write_probe(tracker.states[task].writer, config.model, task_object, sft_config(config), settings)
    return run_dir / "trajectories" / task
