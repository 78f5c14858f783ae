"""The demo on the shipped defaults: accuracy before SFT, a tracked SFT run on
two tasks (trajectories + MLflow), attribution of the fine-tuned task, and a
small free / static / random comparison.

    python experiments/demo.py [--steps 40]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

OUT = Path("runs/demo")


def foresight(*args: str) -> None:
    print(f"\n$ foresight {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "foresight.cli", *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    start = time.perf_counter()
    steps = str(args.steps)
    foresight("evaluate", "--n", "200")
    foresight(
        "track", "--task", "ioi", "--task", "gender", "--steps", steps, "--every", "10", "--out", str(OUT)
    )
    foresight("attribute", "--task", "ioi", "--top", "8")
    foresight("compare", "--task", "gender", "--strategies", "free,static,random", "--seeds", "2",
              "--steps", steps, "--out", str(OUT / "compare"))  # fmt: skip
    print(f"\ndemo done in {time.perf_counter() - start:.0f} s")
    print(f"open the MLflow UI: mlflow ui --backend-store-uri sqlite:///{Path.cwd() / 'mlflow.db'}")


if __name__ == "__main__":
    main()
