"""A study designed where forecasting could win, at equal cost: the switch at k = 0..3, new targets.

    python experiments/study_design.py [--dry-run] [--tasks ...] [--seeds 0 1 2 3 4] [--prefixes 0 1 2 3]
        [--arms ...] [--report-only | --per-run experiments/results/design_per_run.csv]

Arms (each one sweep of `foresight.sweep`, MLflow experiment `study-design-{arm}`; every arm has
the same steps, data, K and LoRA budget):

- `k{k}`: predictive, last and gradient switching at checkpoint k (warm-up k + 1 checkpoints; the
  forecaster of each task is `--forecaster` trained leave-one-family-out at prefix k, cached by
  corpus fingerprint as in experiments/study_foresight.py);
- `base`: free, static, dynamic, predictive-dynamic (prefix 3), oracle and oracle-masked (the
  final circuit of a masked static run: the oracle for an updater);
- `lr{lr}`: random and static at each learning rate of LR_GRID, so that random gets its own
  best learning rate from the grid the others use (its selection is counted in Holm).

Tasks: the five separating tasks and six template variants (DESIGN_TASKS), 5 seeds: 11 tasks in 9
families, so the family (the cluster of the tests) has 9 members and the smallest exact two-sided
sign-flip p is 2/2^9. The report (`design_tests`) pairs the runs by (task, seed), averages within
each family and tests with `foresight.stats.paired_tests` (Holm over DESIGN_PAIRS and, where random ran,
the learning rates that random's best was chosen from; pairs of arms that did not run are left
out). Per-run results: experiments/results/design_per_run.csv;
table: experiments/results/design.md, rebuilt from MLflow (`--report-only`) or from the per-run
CSV alone (`--per-run FILE`: design.md beside FILE). `--dry-run` prints the trials and the estimated CPU time.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import mlflow
import pandas as pd
from study_foresight import FORECASTERS, held_out_forecasters

from foresight import stats
from foresight.mlflow_log import resolve_tracking_uri
from foresight.report import experiment_runs, strategy_frame
from foresight.sweep import SweepConfig, run_sweep
from foresight.tasks import task_family
from foresight.updater.config import DEFAULT_LR, FinetuneConfig

RESULTS = Path(__file__).parent / "results"
PER_RUN = RESULTS / "design_per_run.csv"
SEPARATING = ("bool", "docstring", "induction", "ioi", "reverse")
VARIANTS = (
    "arithmetic_add",
    "gender_went",
    "greater_than_after",
    "sentiment_felt",
    "ioi_saw",
    "induction_names",
)
DESIGN_TASKS = (*SEPARATING, *VARIANTS)
LR_GRID = (2.5e-3, 5e-3, 1e-2)
SECONDS_PER_TRIAL = 10.2  # a switching arm on 2 one-thread workers: 165 trials in about 14 min (2026-12-05)
BASE = ("free", "static", "dynamic", "predictive-dynamic", "oracle", "oracle-masked")
SWITCHING = ("predictive", "last", "gradient")


def arms(prefixes: list[int]) -> dict[str, tuple[tuple[str, ...], dict]]:
    """arm -> (strategies, FinetuneConfig overrides)."""
    found: dict[str, tuple[tuple[str, ...], dict]] = {"base": (BASE, {"warmup_checkpoints": 4})}
    for k in prefixes:
        found[f"k{k}"] = (SWITCHING, {"warmup_checkpoints": k + 1})
    for lr in LR_GRID:
        found[f"lr{lr:g}"] = (("random", "static"), {"lr": lr})
    return found


def design_pairs(prefixes: list[int]) -> list[tuple[str, str]]:
    """The comparisons the design table makes (labels `strategy@arm`)."""
    pairs = [("predictive-dynamic@base", "dynamic@base"), ("oracle-masked@base", "oracle@base")]
    pairs += [("oracle-masked@base", "static@base"), ("oracle@base", "static@base")]
    for k in prefixes:
        a = f"@k{k}"
        pairs += [
            (f"predictive{a}", f"last{a}"),
            (f"predictive{a}", "static@base"),
            (f"last{a}", "static@base"),
        ]
        pairs += [(f"gradient{a}", f"last{a}"), (f"gradient{a}", f"predictive{a}")]
    return pairs


def best_random(frame: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """`frame` with the random arm at its best learning rate (highest mean accuracy) added as
    random@best, and the label of that arm (None where random did not run)."""
    random = frame[frame["strategy"].str.startswith("random@")]
    if random.empty:
        return frame, None
    best = random.groupby("strategy")["accuracy_after"].mean().idxmax()
    return pd.concat([frame, random[random["strategy"] == best].assign(strategy="random@best")]), best


def design_tests(frame: pd.DataFrame, prefixes: list[int]) -> pd.DataFrame:
    """Family-level paired tests of DESIGN_PAIRS and random@best vs static@base; Holm over them
    and the len(LR_GRID) - 1 learning rates that random's best was picked from."""
    frame, best = best_random(frame)
    frame = frame.assign(family=frame["task"].map(task_family))
    pairs = [*design_pairs(prefixes), ("random@best", "static@base")]
    hidden = len(LR_GRID) - 1 if best else 0
    return stats.paired_tests(
        frame, pairs, "strategy", "accuracy_after", ["task", "seed"], "family", hidden=hidden
    )


def design_markdown(frame: pd.DataFrame, prefixes: list[int]) -> str:
    """The design table of a strategy frame whose strategies are labelled `strategy@arm`: the
    per-task means and `design_tests` over the arms it holds (arms of `arms(prefixes)` it lacks
    are named as not run)."""
    ran = set(frame["strategy"].str.split("@").str[1])
    chosen = [a for a in arms(prefixes) if a in ran]
    missing = [a for a in arms(prefixes) if a not in ran]
    tests = design_tests(frame, [k for k in prefixes if f"k{k}" in ran])
    _, best = best_random(frame)
    means = frame.pivot_table(index="task", columns="strategy", values="accuracy_after", aggfunc="mean")
    if tests.empty:
        body = "No comparison: none of its pairs of arms ran.\n"
    else:
        body = (
            f"Family-level paired tests (exact sign-flip p, Holm over these {len(tests)} comparisons"
            + (f" and random's learning-rate choice; random@best is {best}" if best else "")
            + "):\n\n"
            + tests.to_markdown(index=False, floatfmt=".3g")
            + "\n"
        )
    return (
        f"# Study design: arms {', '.join(chosen)} ({len(frame)} runs)\n\n"
        + (f"Not run: arms {', '.join(missing)}.\n\n" if missing else "")
        + means.reset_index().to_markdown(index=False, floatfmt=".3f")
        + "\n\n"
        + body
        + f"\nForecasters: {FORECASTERS}; default lr {DEFAULT_LR['lora']:g}, grid {LR_GRID}.\n"
    )


def write_report(frame: pd.DataFrame, prefixes: list[int], directory: Path = RESULTS) -> None:
    """Write `directory`/design.md (`design_markdown`) and print it."""
    text = design_markdown(frame, prefixes)
    (directory / "design.md").write_text(text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(DESIGN_TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--prefixes", nargs="+", type=int, default=[0, 1, 2, 3])
    parser.add_argument("--arms", nargs="+", help="run only these arms (default: all)")
    parser.add_argument("--corpus", type=Path, default=Path("predictors/assets/corpus"))
    parser.add_argument("--forecaster", default="lgbm-no-lookahead")
    parser.add_argument("--steps", type=int, default=160)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--report-only", action="store_true", help="rebuild the table from MLflow")
    parser.add_argument(
        "--per-run", type=Path, help="rebuild the table from this per-run CSV instead (design.md beside it)"
    )
    args = parser.parse_args()
    if args.per_run and not args.per_run.is_file():
        parser.error(f"--per-run {args.per_run}: no such file")
    if args.per_run:
        return write_report(pd.read_csv(args.per_run), args.prefixes, args.per_run.parent)
    chosen = {a: v for a, v in arms(args.prefixes).items() if args.arms is None or a in args.arms}
    n_trials = sum(len(s) for s, _ in chosen.values()) * len(args.tasks) * len(args.seeds)
    hours = n_trials * SECONDS_PER_TRIAL / 3600
    print(
        f"{len(chosen)} arms, {n_trials} trials; at {SECONDS_PER_TRIAL} s per trial about "
        f"{hours:.1f} CPU hours (the oracles train twice)"
    )
    if args.dry_run:
        return
    mlflow.set_tracking_uri(resolve_tracking_uri())
    frames = []
    for arm, (strategies, overrides) in chosen.items():
        experiment = f"study-design-{arm}"
        if not args.report_only:
            settings = replace(
                FinetuneConfig(steps=args.steps, every=4, log_every=20, components=8, save_model=False),
                **overrides,
            )
            k = overrides.get("warmup_checkpoints", 4) - 1
            forecasters = {}
            if any(s.startswith("predictive") for s in strategies):
                build = held_out_forecasters(args.corpus, args.forecaster, prefix=k)
                forecasters = {t: str(build(t)) for t in args.tasks}
            sweep = SweepConfig(
                experiment, tuple(args.tasks), strategies, tuple(args.seeds), settings,
                Path("runs") / experiment, forecasters,
            )  # fmt: skip
            result = run_sweep(sweep, args.workers)
            for key, error in result.failed.items():
                print(f"{arm} {key}: failed every try ({error})", flush=True)
        frame = strategy_frame(experiment_runs(experiment))
        frames.append(frame.assign(strategy=frame["strategy"] + f"@{arm}"))
    frame = pd.concat(frames, ignore_index=True)
    RESULTS.mkdir(exist_ok=True)
    out = frame.assign(family=frame["task"].map(task_family), regime="lora", value=frame["accuracy_after"])
    out.to_csv(PER_RUN, index=False)
    write_report(frame, args.prefixes)


if __name__ == "__main__":
    main()
