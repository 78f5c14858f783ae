"""The demo on the shipped defaults: track, forecast, and fine-tune by foresight, end to end.

    python experiments/demo.py [--task ioi] [--quick]

1. accuracy of the shipped default model on every task before SFT;
2. tracked SFT on two tasks (trajectories + an MLflow run with CD/CS/CC);
3. leave-one-family-out forecasting on the shipped trajectory corpus (predictors/assets/corpus);
4. a LightGBM forecaster trained on the corpus without `--task` and its family (the task it
   will forecast);
5. free / static / random / predictive / oracle LoRA fine-tuning of `--task` over 2 seeds, with
   the printed table and the MLflow parent run that holds it.

Everything goes to runs/demo (cleared first) and the MLflow store of MLFLOW_TRACKING_URI, else
./mlflow.db. `--quick` is the few-step smoke run the test suite makes. Prints the wall time and
the command that opens the MLflow UI.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

OUT = Path("runs/demo")
CORPUS = Path(__file__).resolve().parents[1] / "predictors" / "assets" / "corpus"


def foresight(*args: str) -> None:
    print(f"\n$ foresight {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "foresight.app.cli", *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="ioi", help="the task fine-tuned, held out of the forecaster")
    parser.add_argument("--quick", action="store_true", help="a few steps of everything (smoke test)")
    args = parser.parse_args()
    start = time.perf_counter()
    shutil.rmtree(OUT, ignore_errors=True)
    steps, n_eval, track_steps, every, seeds = (
        ("16", "20", "8", "4", "1") if args.quick else ("160", "200", "100", "10", "2")
    )
    other = "gender" if args.task != "gender" else "ioi"
    foresight("evaluate", "--n", n_eval)
    foresight("track", "--task", args.task, "--task", other, "--steps", track_steps, "--every", every,
              "--out", str(OUT / "track"))  # fmt: skip
    baselines = ["--model", "static", "--model", "last", "--model", "extrapolate", "--model", "anticipate"]
    corpus = ["--trajectories", str(CORPUS), "--circuit-size", "8"]
    foresight("forecast", "eval", *corpus, *baselines, "--model", "lgbm")
    forecaster = str(OUT / "forecaster")
    foresight("forecast", "train", *corpus, "--hold-out", args.task, "--out", forecaster)
    foresight("compare", "--task", args.task, "--strategies", "free,static,random,predictive,oracle",
              "--seeds", seeds, "--steps", steps, "--every", "4", "--log-every", "20",
              "--forecaster", forecaster, "--out", str(OUT / "compare"))  # fmt: skip
    print(f"\ndemo done in {time.perf_counter() - start:.0f} s")
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    if uri.startswith("http"):
        print(f"the runs are on the MLflow server {uri}")
    else:
        print(f"open the MLflow UI: mlflow ui --backend-store-uri {uri}")


if __name__ == "__main__":
    main()
