"""The trajectory corpus: tracked SFT of the default model on every task, in two regimes, several seeds.

    python experiments/collect_trajectories.py [--root runs/corpus] [--tasks ...] [--seeds 0 1 2]
        [--regimes free lora-static] [--runs TASK:REGIME ...] [--steps 160] [--every 4]
        [--compact predictors/assets/corpus]

Tasks: the nine built-ins and their template-family variants (`foresight.tasks.corpus_task_names`,
30 tasks in 9 families). Regimes: `free` (free full SFT, lr 1e-3, `trackers.run.track`, one MLflow
run of experiment "foresight-corpus" each) and `lora-static` (masked LoRA under the static set at
the LoRA default lr 5e-3, the forecasting strategies' warm-up regime, `trackers.run.track_finetune`).
One run per (task, seed, regime) (or per seed and `--runs` pair), tracked every `every` steps from step 0 with
`trackers.tracker.CORPUS_SETTINGS` (node eap scores on 32 fixed pairs, gradient norms, look-ahead
derivatives, accuracy, faithfulness), so the first tenth of training holds step 0 and
`steps / (10 * every)` more checkpoints; then the probe fine-tune of the `anticipate` baseline
(trackers.probe). Re-running skips finished runs (an interrupted free run resumes; an interrupted
lora-static run starts again). `runs.csv` in the root lists every run collected there with its
labels (task, family, seed, mode, strategy, lr), wall time and size on disk; the compact copy's
`runs.csv` lists every run in it (wall time where the root's list, or the copy's list before,
has it). `--compact` writes a node-level copy (what the tests, the demo and the studies use),
adding to or replacing runs of a copy made before. Prints the total time.
"""

from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from foresight.sft import SFTConfig
from foresight.tasks import corpus_task_names, get_task, task_family
from foresight.updater.config import FinetuneConfig
from trackers.probe import write_probe
from trackers.run import RUN_FILE, track, track_finetune
from trackers.settings import CORPUS_SETTINGS, TrackerSettings
from trackers.store import (
    PROBE,
    TrajectoryWriter,
    checkpoint_file,
    find_trajectories,
    read_checkpoint,
    read_manifest,
    regime_of,
    written_steps,
)

EXPERIMENT = "foresight-corpus"
REGIMES = ("free", "lora-static")
RUNS_FILE = "runs.csv"


def _finished(trajectory: Path, n_checkpoints: int) -> bool:
    return len(written_steps(trajectory)) == n_checkpoints and (trajectory / PROBE).is_file()


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def collect_run(
    task: str, seed: int, regime: str, root: Path, model: str, steps: int, settings: TrackerSettings
) -> tuple[str, Path]:
    """Track one (task, seed, regime) run and write its probe; returns what was done and the
    trajectory directory."""
    run_dir = root / (f"{task}-s{seed}" if regime == "free" else f"{task}-{regime}-s{seed}")
    trajectory = run_dir / "trajectories" / task
    if _finished(trajectory, steps // settings.every + 1):
        return "done before", trajectory
    if regime == "lora-static":
        shutil.rmtree(run_dir, ignore_errors=True)
        config = FinetuneConfig(
            strategy="static", model=model, mode="lora", steps=steps, seed=seed, every=settings.every,
            log_every=steps, n_pairs=settings.n_pairs, save_model=False,
        )  # fmt: skip
        track_finetune(task, config, run_dir, settings)
        shutil.rmtree(run_dir / "finetune", ignore_errors=True)
        return "tracked", trajectory
    sft = SFTConfig(steps=steps, seed=seed)
    resume = (run_dir / RUN_FILE).is_file()
    run = track([task], run_dir, model, sft, settings, resume, EXPERIMENT, save_every=sft.steps // 4)
    write_probe(run.tracker.states[task].writer, model, get_task(task), sft, settings)
    shutil.rmtree(run_dir / "trainer", ignore_errors=True)
    return ("resumed" if resume else "tracked"), trajectory


def write_compact(root: Path, out: Path) -> int:
    """Node-level copies of every trajectory under `root` into `out/{run}` ({run}: the directory
    under `root` that holds it, so a compact copy can be compacted again), but the copies that
    MLflow keeps as artifacts (an artifact store under `root`); returns the count."""
    paths = [p for p in find_trajectories(root) if "artifacts" not in p.relative_to(root).parts]
    for path in paths:
        manifest = read_manifest(path)
        target = out / path.relative_to(root).parts[0]
        shutil.rmtree(target, ignore_errors=True)
        writer = TrajectoryWriter(target, manifest)
        for file in [*(checkpoint_file(path, s) for s in written_steps(path)), path / PROBE]:
            if not file.is_file():
                continue
            table, scalars = read_checkpoint(file)
            nodes = table[table["level"] == "node"].drop(columns="step")
            step = int(table["step"].iloc[0])
            if file.name == PROBE:
                writer.write_probe(nodes, scalars, step)
            else:
                writer.write_checkpoint(step, nodes, scalars)
    return len(paths)


def run_row(trajectory: Path, seconds: float) -> dict[str, object]:
    """The `runs.csv` row of one trajectory."""
    manifest = read_manifest(trajectory)
    regime = regime_of(manifest)
    return {
        "run": manifest["run_id"], "task": manifest["task"], "family": task_family(manifest["task"]),
        "seed": manifest["seed"], "mode": regime["mode"], "strategy": regime["strategy"], "lr": regime["lr"],
        "wall_s": round(seconds, 1), "bytes": _size(trajectory),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("runs/corpus"))
    parser.add_argument("--model", default="default")
    parser.add_argument("--tasks", nargs="*", default=corpus_task_names())
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--regimes", nargs="*", choices=REGIMES, default=list(REGIMES))
    parser.add_argument(
        "--runs", nargs="*", default=None, help="TASK:REGIME pairs instead of tasks x regimes"
    )
    parser.add_argument("--steps", type=int, default=160)
    parser.add_argument("--every", type=int, default=CORPUS_SETTINGS.every)
    parser.add_argument("--compact", type=Path, default=None, help="write a node-level copy here")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = replace(CORPUS_SETTINGS, every=args.every)
    start = time.perf_counter()
    pairs = [tuple(r.split(":")) for r in args.runs] if args.runs else None
    if pairs and any(len(p) != 2 or p[1] not in REGIMES for p in pairs):
        parser.error(f"--runs takes TASK:REGIME with REGIME one of {', '.join(REGIMES)}")
    pairs = pairs or [(task, regime) for regime in args.regimes for task in args.tasks]
    jobs = [(task, seed, regime) for seed in args.seeds for task, regime in pairs]
    args.root.mkdir(parents=True, exist_ok=True)
    runs_file = args.root / RUNS_FILE
    rows = pd.read_csv(runs_file).to_dict("records") if runs_file.is_file() else []
    for i, (task, seed, regime) in enumerate(jobs, 1):
        run_start = time.perf_counter()
        done, trajectory = collect_run(task, seed, regime, args.root, args.model, args.steps, settings)
        seconds = time.perf_counter() - run_start
        if done != "done before":
            rows = [r for r in rows if r["run"] != read_manifest(trajectory)["run_id"]]
            rows.append(run_row(trajectory, seconds))
            pd.DataFrame(rows).to_csv(runs_file, index=False)
        print(
            f"[{i}/{len(jobs)}] {task} seed {seed} {regime}: {done} in {seconds:.0f} s "
            f"(total {time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    if args.compact is not None:
        print(f"compact node-level copy: {write_compact(args.root, args.compact)} runs -> {args.compact}")
        listed_before = args.compact / RUNS_FILE  # runs compacted from other roots keep their times
        before = pd.read_csv(listed_before).to_dict("records") if listed_before.is_file() else []
        wall = {r["run"]: r["wall_s"] for r in [*before, *rows]}
        listed = [
            run_row(p, wall.get(read_manifest(p)["run_id"], float("nan")))
            for p in find_trajectories(args.compact)
        ]
        pd.DataFrame(listed).to_csv(args.compact / RUNS_FILE, index=False)
        print(f"compact copy: {len(listed)} runs, {_size(args.compact) / 2**20:.1f} MiB")
    final = pd.Timedelta(seconds=round(time.perf_counter() - start))
    print(f"corpus of {len(jobs)} runs under {args.root} in {final}")


if __name__ == "__main__":
    main()
