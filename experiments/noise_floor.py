"""The noise floor of CD and CS on the default model at step 0, against the evolution study's table.

    python experiments/noise_floor.py [--boot 20] [--pairs 32] [--circuit-size 10] [--seed 0]

For every task, the tracker's attribution pairs (seed 0, as in the evolution study) are resampled
`--boot` times (`foresight.noise_floor.noise_floor`: node eap, top-`circuit-size` heads and MLPs)
on the default model before any fine-tuning. Writes experiments/results/noise_floor_per_run.csv
(task, kind, one row per pair of resampled circuits: their CD) and noise_floor.md: per task and
kind the floor's median and 95th percentile, CS's 5th percentile, and, from
experiments/results/evolution.md, the mean CD to step 0 at the end of SFT and whether it lies
above the floor (a migration) or inside it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from foresight.encoding import encode_pairs
from foresight.models import load_model
from foresight.noise_floor import KINDS, noise_floor
from foresight.report import FLOOR_COLUMNS
from foresight.tasks import get_task, task_names

RESULTS = Path(__file__).parent / "results"
EVOLUTION_COLUMNS = {"head": "cd_start_head", "mlp": "cd_start_mlp"}


def evolution_means(path: Path) -> pd.DataFrame:
    """The mean (before ±) of each cd_start_* column per task of the evolution table."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    rows = [r for r in rows if len(r) == len(header)]
    table = pd.DataFrame(rows, columns=header).set_index("task")
    return table[list(EVOLUTION_COLUMNS.values())].map(lambda v: float(v.split("±")[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boot", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--circuit-size", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model("default")
    start, rows, summary = time.perf_counter(), [], []
    evolution = evolution_means(RESULTS / "evolution.md")
    for task in task_names():
        pairs = encode_pairs(tokenizer, get_task(task).attribution_pairs(args.pairs, seed=args.seed))
        floor = noise_floor(model, pairs, args.circuit_size, args.boot, args.seed)
        rows += [{"task": task, "kind": k, "cd": v} for k in KINDS for v in floor.cd[k]]
        row = {"task": task, "cs floor p05": floor.cs_p05()}
        for kind, column in EVOLUTION_COLUMNS.items():
            final = evolution.loc[task, column] if task in evolution.index else np.nan
            row |= {
                f"CD {kind} floor median": float(np.median(floor.cd[kind])),
                f"CD {kind} floor p95": floor.cd_p95(kind),
            }
            row |= {f"CD {kind} end of SFT": final, f"{kind} migrated": bool(final > floor.cd_p95(kind))}
        summary.append(row)
        print(row, flush=True)
    RESULTS.mkdir(exist_ok=True)
    pd.DataFrame(rows, columns=list(FLOOR_COLUMNS)).to_csv(RESULTS / "noise_floor_per_run.csv", index=False)
    table = pd.DataFrame(summary)
    text = (
        "# Noise floor of Circuit Distance on the default model (step 0)\n\n"
        f"{args.boot} bootstrap resamples of the {args.pairs} attribution pairs per task (seed {args.seed}), "
        f"node eap, circuit: the top {args.circuit_size} heads and MLPs; floor: CD between every two "
        "resampled circuits. 'end of SFT': the mean over 3 seeds of CD to step 0 at step 600 of the "
        "evolution study (experiments/results/evolution.md); it counts as a migration only above the "
        "floor's 95th percentile. The floor is measured at step 0 (the end-of-SFT models are not "
        "stored), so it is the start model's resampling noise.\n\n"
        + table.to_markdown(index=False, floatfmt=".3f")
        + f"\n\nMigrated above the floor: heads in {int(table['head migrated'].sum())} of "
        f"{len(table)} tasks, MLPs in {int(table['mlp migrated'].sum())} of {len(table)}. Wall time "
        f"{time.perf_counter() - start:.0f} s on {args.threads} threads.\n"
    )
    (RESULTS / "noise_floor.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
