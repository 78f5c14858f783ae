#!/usr/bin/env bash
# The GPU check (experiments/gpu_check.py): one short run, under 6 minutes on one GPU, that prints
# one table (training, attribution, tracking and finetune costs, peak GPU memory) and a line of
# versions, on Llama-3-8B's shapes (2 layers and all 32) and on GPT-2 small, all bfloat16.
# Record its table in the README with the date. The caller's PYTHONPATH is kept (behind the repo).
#
# The device image holds torch, transformers, peft, accelerate, pandas, pyarrow, rich and typer but
# not mlflow (the tracked run logs to it): carry its wheels in .whl/ (ignored by git), made here by
#   pip download --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl mlflow-skinny
# GPU_CHECK_TIMEOUT (seconds, default 360) bounds the run. Extra arguments go to gpu_check.py
# (e.g. --small --device cpu for a smoke test without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if ! "$python" -c "import mlflow" 2>/dev/null; then
    "$python" -m pip install --quiet --no-index --find-links .whl mlflow-skinny
fi
export MLFLOW_LOGGING_LEVEL=WARNING PYTHONWARNINGS=ignore
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
timeout "${GPU_CHECK_TIMEOUT:-360}" "$python" experiments/gpu_check.py "$@"
