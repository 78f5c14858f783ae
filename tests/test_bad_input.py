"""Bad input catalogue: every `foresight` command answers malformed input with one
`error: ...` line on stderr that says what is wrong and where, exit code 2 and no
traceback; what a failed command finds already written is left as it was.

The commands run in this process through `foresight.app.cli.main` (the entry point that
maps errors to one line), with a temporary SQLite MLflow store."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service import utils as tracking_utils
from synthetic import synthetic_trajectories, write_corpus
from transformers import BertConfig, BertForMaskedLM

import trackers.run
from foresight.app.cli import MLFLOW_ENV_DEFAULTS, main
from foresight.app.forecast import train_command
from foresight.mlflow_log import PENDING_FILE, SafeLogger
from foresight.models import SHIPPED, load_model
from foresight.output_dirs import SWEEP_FILE
from foresight.tracking_uri import check_tracking_uri
from trackers.store import MANIFEST, SCALARS_KEY, checkpoint_file

GOOD = [
    {"clean": "3 + 4 =", "corrupted": "3 + 5 =", "answer": "7", "wrong": "8", "split": "train"},
    {"clean": "2 + 2 =", "corrupted": "2 + 6 =", "answer": "4", "wrong": "8", "split": "eval"},
]


@dataclass
class Result:
    code: int | str | None
    out: str
    err: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def digest(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under `root`."""
    return {
        str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(root.rglob("*"))
        if f.is_file()
    }


def _jsonl(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _rewrite_scores(file: Path, value: object) -> None:
    """Put `value` into the score of the second row of a checkpoint, bypassing the writer
    (a string turns the column into strings)."""
    table = pq.read_table(file)
    scores = table.column("score").to_pylist()
    scores[1] = value
    if isinstance(value, str):
        scores = [str(v) for v in scores]
    table = table.set_column(table.schema.get_field_index("score"), "score", pa.array(scores))
    pq.write_table(table, file)


def _rewrite_scalars(file: Path, text: bytes) -> None:
    """Replace the JSON scalars of a checkpoint by `text`, bypassing the writer."""
    table = pq.read_table(file)
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, SCALARS_KEY: text}), file)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Inputs shared by the cases: JSONL files, model directories, trajectories, a forecaster."""
    root = tmp_path_factory.mktemp("bad-input")
    _jsonl(root / "bad_json.jsonl", [json.dumps(GOOD[0]), "{oops", json.dumps(GOOD[1])])
    _jsonl(root / "missing_field.jsonl", [json.dumps(GOOD[0]), json.dumps({"clean": "a", "answer": "b"})])
    _jsonl(root / "unequal.jsonl", [json.dumps(GOOD[0]), json.dumps({**GOOD[1], "corrupted": "2 + 2 + 6 ="})])
    for name, model_type in (("unknown-arch", "foobarnet"), ("bert", "bert")):
        (root / name).mkdir()
        (root / name / "config.json").write_text(json.dumps({"model_type": model_type}))
        (root / name / "model.safetensors").write_bytes(b"not really weights")
    shutil.copytree(SHIPPED["default"], root / "no-weights", ignore=shutil.ignore_patterns("*.safetensors"))

    trajectories, probes = synthetic_trajectories(tasks=("t0", "t1"), seeds=(0,), n_checkpoints=5)
    corpus = write_corpus(trajectories, probes, root / "corpus")
    train_command(corpus, prefix=2, horizon="final", model="lgbm", circuit_size=4, out=root / "forecaster")
    other = synthetic_trajectories(tasks=("t0",), seeds=(0,), n_heads=3, n_checkpoints=5)
    write_corpus(*other, root / "other", n_heads=3)

    for name in ("schema", "truncated", "nan", "inf", "infs", "text-scores"):
        shutil.copytree(corpus, root / name)
    _rewrite_scalars(checkpoint_file(root / "infs" / "t0-s0", 50), b'{"accuracy": Infinity}')
    _rewrite_scores(checkpoint_file(root / "text-scores" / "t0-s0", 0), "high")
    manifest = root / "schema" / "t0-s0" / MANIFEST
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "schema_version": 99}))
    truncated = checkpoint_file(root / "truncated" / "t1-s0", 50)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    _rewrite_scores(checkpoint_file(root / "nan" / "t0-s0", 25), float("nan"))
    _rewrite_scores(checkpoint_file(root / "inf" / "t0-s0", 75), float("-inf"))
    (root / "empty").mkdir()

    run = root / "existing-run"  # what `foresight track` leaves behind
    (run / "trajectories" / "ioi" / "checkpoints").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"run_id": "abc", "tracking_uri": "sqlite:///nowhere.db"}))
    (run / "trajectories" / "ioi" / MANIFEST).write_text("{}")
    (root / "a-file").write_text("a regular file, not a directory\n")

    for folder in ("one", "two"):
        (root / folder).mkdir()
        _jsonl(root / folder / "mine.jsonl", [json.dumps(g) for g in GOOD])
    same = {**GOOD[1], "corrupted": GOOD[1]["clean"]}
    _jsonl(root / "same_prompts.jsonl", [json.dumps(GOOD[0]), json.dumps(same)])
    unknown = {**GOOD[1], "clean": "2 + zebra =", "corrupted": "2 + 6 ="}
    _jsonl(root / "unknown_words.jsonl", [json.dumps(GOOD[0]), json.dumps(unknown)])
    long = {**GOOD[1], "clean": "1 + " * 40 + "1 =", "corrupted": "1 + " * 40 + "2 ="}
    _jsonl(root / "long_prompt.jsonl", [json.dumps(GOOD[0]), json.dumps(long)])
    _jsonl(root / "multi_token.jsonl", [json.dumps(GOOD[0]), json.dumps({**GOOD[1], "answer": "3 4"})])

    shutil.copytree(SHIPPED["default"], root / "no-tokenizer", ignore=shutil.ignore_patterns("tokenizer*"))
    shutil.copytree(SHIPPED["default"], root / "truncated-weights")
    weights = root / "truncated-weights" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    shutil.copytree(SHIPPED["default"], root / "extra-layer")
    config = root / "extra-layer" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "num_hidden_layers": 5}))

    for name in ("fc-no-model", "fc-truncated-model", "fc-truncated-spec"):
        shutil.copytree(root / "forecaster", root / name)
    (root / "fc-no-model" / "model.txt").unlink()
    for file in (root / "fc-truncated-model" / "model.txt", root / "fc-truncated-spec" / "forecaster.json"):
        file.write_bytes(file.read_bytes()[: file.stat().st_size * 2 // 3])

    shutil.copytree(corpus / "t0-s0", root / "gap" / "t0-s0")
    manifest = root / "gap" / "t0-s0" / MANIFEST  # a tracker's cadence: every 25 steps
    manifest.write_text(
        json.dumps({**json.loads(manifest.read_text()), "tracker": {"every": 25, "steps": None}})
    )
    checkpoint_file(root / "gap" / "t0-s0", 50).unlink()
    (root / "old-compare").mkdir()
    prompt = json.dumps({"prompt": "3 plus 4 equals", "completion": " 7"})  # training data (--train-data)
    _jsonl(root / "train_bad_json.jsonl", [prompt, "{oops"])
    _jsonl(
        root / "train_unknown_field.jsonl", [prompt, json.dumps({"prompt": "a", "completion": " b", "id": 3})]
    )
    _jsonl(
        root / "train_empty_completion.jsonl", [prompt, json.dumps({"prompt": "3 plus", "completion": " "})]
    )
    _jsonl(root / "train_mixed.jsonl", [prompt, json.dumps({"text": "3 plus 4 equals 7"})])
    chat = {"messages": [{"role": "user", "content": "say red"}, {"role": "assistant", "content": "red"}]}
    _jsonl(root / "train_chat.jsonl", [json.dumps(chat)])
    _jsonl(root / "train_ok.jsonl", [prompt])
    (root / "old-compare" / "comparison.md").write_text("# an earlier comparison\n")

    lm, tokenizer = load_model("default", "float32", "cpu")  # an embedding 10 rows short
    lm.resize_token_embeddings(len(tokenizer) - 10)
    lm.save_pretrained(root / "small-embedding")
    tokenizer.save_pretrained(root / "small-embedding")
    encoder = BertForMaskedLM(
        BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                   intermediate_size=32)
    )  # fmt: skip
    encoder.save_pretrained(root / "bert-mlm")
    tokenizer.save_pretrained(root / "bert-mlm")
    twenty = [{"clean": f"{a} + {b} =", "corrupted": f"{a} + {b + 1} =", "answer": str(a + b),
               "wrong": str(a + b + 1), "split": "eval"} for a in range(5) for b in range(4)]  # fmt: skip
    _jsonl(root / "twenty.jsonl", [json.dumps(GOOD[0]), *map(json.dumps, twenty)])
    _jsonl(root / "copies.jsonl", [json.dumps(GOOD[0])] + [json.dumps(GOOD[1])] * 20)
    return root


@pytest.fixture()
def cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> Iterator[Callable[..., Result]]:
    """Runs `foresight ARGS...` through main(): the exit code and what it printed."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.delenv("FORESIGHT_DEBUG", raising=False)
    for name in MLFLOW_ENV_DEFAULTS:  # main() sets them; restored after the test
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    saved_uri = tracking_utils._tracking_uri

    def run(*args: object) -> Result:
        monkeypatch.setattr(sys, "argv", ["foresight", *map(str, args)])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as done:
            code = done.code
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    yield run
    mlflow.set_tracking_uri(saved_uri)


def assert_one_error_line(result: Result, *fragments: str) -> str:
    """Exit code 2, no traceback, and stderr is one `error:` line holding every fragment."""
    assert result.code == 2, (result.code, result.err[-3000:])
    assert "Traceback" not in result.err and "Traceback" not in result.out
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def unwritable_dir(tmp_path: Path) -> Path:
    """An output directory that cannot be created: below a read-only directory, or, where
    permissions do not stop this user (root), below a regular file."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        (locked / "probe").mkdir()
    except PermissionError:
        return locked / "out"
    (locked / "probe").rmdir()  # permissions do not bind this user
    locked.chmod(0o700)
    (tmp_path / "a-file").write_text("")
    return tmp_path / "a-file" / "out"


# (id, arguments with {data} for the shared inputs, fragments the error line must hold)
CASES = [
    ("tasks-extra-argument", ["tasks", "extra"], ["unexpected extra argument", "extra"]),
    (
        "evaluate-missing-jsonl",
        ["evaluate", "--task", "{data}/nope.jsonl"],
        ["{data}/nope.jsonl: no such file"],
    ),
    (
        "evaluate-bad-json",
        ["evaluate", "--task", "{data}/bad_json.jsonl", "--n", "4"],
        ["{data}/bad_json.jsonl:2: not valid JSON"],
    ),
    (
        "sft-missing-field",
        ["sft", "--task", "{data}/missing_field.jsonl", "--out", "sft-out", "--steps", "1"],
        ["{data}/missing_field.jsonl:2: missing field 'corrupted'"],
    ),
    (
        "evaluate-unequal-lengths",
        ["evaluate", "--task", "{data}/unequal.jsonl", "--n", "4"],
        ["{data}/unequal.jsonl:2: corrupted prompt has 7 tokens, clean prompt has 5"],
    ),
    (
        "attribute-unequal-lengths",
        ["attribute", "--task", "{data}/unequal.jsonl", "--n-pairs", "4"],
        ["{data}/unequal.jsonl:2: corrupted prompt has 7 tokens"],
    ),
    (
        "track-unknown-task",
        ["track", "--task", "nosuch", "--steps", "1", "--every", "1"],
        ["unknown task 'nosuch'", "ioi"],
    ),
    (
        "evaluate-unknown-architecture",
        ["evaluate", "--model", "{data}/unknown-arch", "--task", "ioi", "--n", "4"],
        ["{data}/unknown-arch/config.json: model_type 'foobarnet' is not a causal LM"],
    ),
    (
        "attribute-architecture-without-adapter",
        ["attribute", "--model", "{data}/bert", "--task", "ioi"],
        [
            "{data}/bert/config.json: model_type 'bert' is not supported (supported: gemma2, gemma3_text, ",
            "gpt2, gpt_neox, llama, mistral, olmo2, phi3, qwen2, qwen3); to add a family",
        ],
    ),
    (
        "track-model-without-weights",
        ["track", "--model", "{data}/no-weights", "--task", "ioi", "--steps", "1", "--every", "1"],
        ["model directory {data}/no-weights: no weights"],
    ),
    (
        "track-circuit-size-zero",
        ["track", "--task", "ioi", "--circuit-size", "0"],
        ["--circuit-size: must be at least 1, not 0"],
    ),
    (
        "track-circuit-size-too-large",
        ["track", "--task", "ioi", "--circuit-size", "37"],
        ["--circuit-size 37: must be in 1..36", "'default'"],
    ),
    ("attribute-top-zero", ["attribute", "--task", "ioi", "--top", "0"], ["--top 0: must be in 1..38"]),
    (
        "attribute-top-larger-than-edges",
        ["attribute", "--task", "ioi", "--level", "edge", "--top", "100000"],
        ["--top 100000: must be in 1..", "edges"],
    ),
    (
        "finetune-components-too-large",
        ["finetune", "--task", "ioi", "--strategy", "static", "--components", "99", "--out", "ft"],
        ["--components 99: must be in 1..36"],
    ),
    (
        "compare-components-zero",
        ["compare", "--task", "ioi", "--components", "0", "--seeds", "1", "--out", "cmp"],
        ["--components: must be at least 1, not 0"],
    ),
    (
        "compare-unknown-strategy",
        ["compare", "--task", "ioi", "--strategies", "free,bogus", "--seeds", "1", "--out", "cmp"],
        ["unknown strategy 'bogus'"],
    ),
    (
        "compare-unknown-mode",
        ["compare", "--task", "ioi", "--mode", "half", "--seeds", "1", "--out", "cmp"],
        ["--mode: choose from lora, full, not 'half'"],
    ),
    (
        "finetune-log-every-zero",
        ["finetune", "--task", "ioi", "--strategy", "static", "--log-every", "0", "--out", "ft"],
        ["--log-every: must be at least 1, not 0"],
    ),
    (
        "train-hold-out-unknown-task",
        ["forecast", "train", "--trajectories", "{data}/corpus", "--hold-out", "nosuch", "--out", "fc"],
        ["--hold-out nosuch: no runs of that task under {data}/corpus"],
    ),
    (
        "finetune-predictive-without-forecaster",
        ["finetune", "--task", "ioi", "--strategy", "predictive", "--out", "ft"],
        ["need --forecaster"],
    ),
    (
        "finetune-forecaster-of-another-graph",
        ["finetune", "--task", "ioi", "--strategy", "predictive", "--forecaster", "{data}/forecaster"],
        [
            "--forecaster {data}/forecaster on model 'default': graph",
            "(4 layers x 8 heads",
            "graph",
            "(4 layers x 4 heads",
        ],
    ),
    (
        "predict-trajectory-of-another-graph",
        [
            "forecast",
            "predict",
            "--forecaster",
            "{data}/forecaster",
            "--trajectory",
            "{data}/other/t0-s0",
        ],
        ["differs from the forecaster's training graph"],
    ),
    (
        "predict-not-a-forecaster",
        ["forecast", "predict", "--forecaster", "{data}/corpus", "--trajectory", "{data}/corpus/t0-s0"],
        ["{data}/corpus: no forecaster.json"],
    ),
    (
        "predict-other-schema-version",
        ["forecast", "predict", "--forecaster", "{data}/forecaster", "--trajectory", "{data}/schema/t0-s0"],
        ["{data}/schema/t0-s0/manifest.json: schema_version 99", "reads 1"],
    ),
    (
        "eval-truncated-parquet",
        ["forecast", "eval", "--trajectories", "{data}/truncated"],
        ["{data}/truncated/t1-s0/checkpoints/step-00000050.parquet: unreadable Parquet file"],
    ),
    (
        "train-nan-score",
        ["forecast", "train", "--trajectories", "{data}/nan", "--out", "fc"],
        ["{data}/nan/t0-s0/checkpoints/step-00000025.parquet: non-finite score nan for component"],
    ),
    (
        "predict-inf-score",
        ["forecast", "predict", "--forecaster", "{data}/forecaster", "--trajectory", "{data}/inf/t0-s0"],
        ["{data}/inf/t0-s0/checkpoints/step-00000075.parquet: non-finite score -inf for component"],
    ),
    (
        "predict-infinite-scalar",
        [
            "forecast",
            "predict",
            "--forecaster",
            "{data}/forecaster",
            "--trajectory",
            "{data}/infs/t0-s0",
        ],
        [
            "{data}/infs/t0-s0/checkpoints/step-00000050.parquet: unreadable checkpoint scalars",
            "Infinity",
        ],
    ),
    (
        "eval-scores-as-text",
        ["forecast", "eval", "--trajectories", "{data}/text-scores"],
        ["{data}/text-scores/t0-s0/checkpoints/step-00000000.parquet: column score is not numeric"],
    ),
    (
        "train-empty-root",
        ["forecast", "train", "--trajectories", "{data}/empty", "--out", "fc"],
        ["{data}/empty: no trajectories"],
    ),
    (
        "train-circuit-size-too-large",
        ["forecast", "train", "--trajectories", "{data}/corpus", "--circuit-size", "99", "--out", "fc"],
        ["--circuit-size 99: larger than the 20 heads and MLPs"],
    ),
    (
        "eval-bad-horizon",
        ["forecast", "eval", "--trajectories", "{data}/corpus", "--horizon", "soon"],
        ["--horizon 'soon'"],
    ),
    ("track-usage-error", ["track", "--task", "ioi", "--steps", "many"], ["'--steps'", "track --help"]),
    ("sync-no-run-dir", ["sync", "{data}/no-such-run"], ["{data}/no-such-run: no such run directory"]),
    # track's arguments
    (
        "track-lr-nan",
        ["track", "--task", "ioi", "--lr", "nan"],
        ["--lr: must be a finite number above 0, not nan"],
    ),
    (
        "track-lr-negative",
        ["track", "--task", "ioi", "--lr", "-0.001"],
        ["--lr: must be a finite number above 0, not -0.001"],
    ),
    (
        "track-seed-negative",
        ["track", "--task", "ioi", "--seed", "-1"],
        ["--seed: must be in 0..4294967295, not -1"],
    ),
    (
        "track-seed-too-large",
        ["track", "--task", "ioi", "--seed", str(2**32)],
        ["--seed: must be in 0..4294967295, not 4294967296"],
    ),
    (
        "track-unknown-method",
        ["track", "--task", "ioi", "--method", "eap-x"],
        ["--method: choose from eap, eap-ig, patching, not 'eap-x'"],
    ),
    (
        "track-duplicate-task",
        ["track", "--task", "ioi", "--task", "ioi"],
        ["--task ioi: a second task named 'ioi'"],
    ),
    (
        "track-duplicate-jsonl-name",
        ["track", "--task", "{data}/one/mine.jsonl", "--task", "{data}/two/mine.jsonl"],
        ["--task {data}/two/mine.jsonl: a second task named 'mine' (the first: {data}/one/mine.jsonl)"],
    ),
    (
        "track-clean-equals-corrupted",
        ["track", "--task", "{data}/same_prompts.jsonl"],
        ["{data}/same_prompts.jsonl:2: 'clean' and 'corrupted' are the same prompt"],
    ),
    (
        "track-every-larger-than-steps",
        ["track", "--task", "ioi", "--steps", "5", "--every", "10"],
        ["--every 10 is larger than --steps 5"],
    ),
    ("track-name-with-slash", ["track", "--task", "ioi", "--name", "a/b"], ["--name 'a/b': must be a plain"]),
    ("track-name-dot-dot", ["track", "--task", "ioi", "--name", ".."], ["--name '..': must be a plain"]),
    (
        "track-n-pairs-beyond-memory",
        ["track", "--task", "ioi", "--n-pairs", "100000000"],
        ["--n-pairs 100000000: attribution would need about", "GiB are available"],
    ),
    # tasks against the model
    (
        "track-word-the-tokenizer-does-not-know",
        ["track", "--task", "{data}/unknown_words.jsonl"],
        ["{data}/unknown_words.jsonl:2: task 'unknown_words', model 'default'", "does not know 'zebra'"],
    ),
    (
        "track-prompt-longer-than-the-context",
        ["track", "--model", "default-gpt2", "--task", "{data}/long_prompt.jsonl"],
        ["{data}/long_prompt.jsonl:2: task 'long_prompt', model 'default-gpt2'", "the model's context is 64"],
    ),
    (
        "track-multi-token-answer",
        ["track", "--task", "{data}/multi_token.jsonl"],
        ["{data}/multi_token.jsonl:2: task 'multi_token', model 'default': answer '3 4' is not a single"],
    ),
    # models
    (
        "track-model-without-tokenizer",
        ["track", "--model", "{data}/no-tokenizer", "--task", "ioi"],
        ["model directory {data}/no-tokenizer: no tokenizer"],
    ),
    (
        "track-truncated-weights",
        ["track", "--model", "{data}/truncated-weights", "--task", "ioi"],
        ["{data}/truncated-weights/model.safetensors: ", "bytes, its header describes"],
    ),
    (
        "evaluate-layer-without-weights",
        ["evaluate", "--model", "{data}/extra-layer", "--task", "ioi", "--n", "4"],
        ["model directory {data}/extra-layer: no weights for model.layers.4."],
    ),
    # forecasters and trajectories
    (
        "predict-forecaster-without-model-file",
        ["forecast", "predict", "--forecaster", "{data}/fc-no-model", "--trajectory", "{data}/corpus/t0-s0"],
        ["{data}/fc-no-model/model.txt: missing"],
    ),
    (
        "predict-truncated-model-file",
        [
            "forecast",
            "predict",
            "--forecaster",
            "{data}/fc-truncated-model",
            "--trajectory",
            "{data}/corpus/t0-s0",
        ],
        ["{data}/fc-truncated-model/model.txt: not a complete LightGBM model"],
    ),
    (
        "finetune-truncated-forecaster-spec",
        ["finetune", "--task", "ioi", "--strategy", "predictive", "--forecaster", "{data}/fc-truncated-spec"],
        ["{data}/fc-truncated-spec/forecaster.json: unreadable forecaster spec"],
    ),
    (
        "train-prefix-beyond-every-run",
        ["forecast", "train", "--trajectories", "{data}/corpus", "--prefix", "9", "--out", "fc"],
        ["--prefix 9: no run under {data}/corpus has a checkpoint to forecast", "the longest has 5"],
    ),
    (
        "predict-trajectory-with-a-missing-checkpoint",
        ["forecast", "predict", "--forecaster", "{data}/forecaster", "--trajectory", "{data}/gap/t0-s0"],
        ["{data}/gap/t0-s0/checkpoints/step-00000050.parquet: missing (the run has checkpoints after it)"],
    ),
    # the other commands' arguments
    (
        "sft-lr-negative",
        ["sft", "--task", "ioi", "--out", "o", "--lr", "-1"],
        ["--lr: must be a finite number above 0, not -1.0"],
    ),
    (
        "finetune-lr-nan",
        ["finetune", "--task", "ioi", "--strategy", "static", "--lr", "nan", "--out", "ft"],
        ["--lr: must be a finite number above 0, not nan"],
    ),
    (
        "finetune-seed-too-large",
        ["finetune", "--task", "ioi", "--strategy", "static", "--seed", str(2**40), "--out", "ft"],
        ["--seed: must be in 0..4294967295, not 1099511627776"],
    ),
    (
        "attribute-unknown-method",
        ["attribute", "--task", "ioi", "--method", "gradcam"],
        ["--method 'gradcam': choose from eap, eap-ig, patching"],
    ),
    (
        "compare-seeds-beyond-the-last-seed",
        ["compare", "--task", "ioi", "--seeds", str(2**32 + 1), "--out", "cmp"],
        ["--seeds 4294967297: runs seeds 0..4294967296, but seeds end at 4294967295"],
    ),
    (
        "train-seed-negative",
        ["forecast", "train", "--trajectories", "{data}/corpus", "--seed", "-3", "--out", "fc"],
        ["--seed -3: must be in 0..4294967295"],
    ),
    ("attribute-unknown-level", ["attribute", "--task", "ioi", "--level", "neuron"], ["--level 'neuron'"]),
    (
        "compare-into-an-existing-comparison",
        ["compare", "--task", "ioi", "--seeds", "1", "--steps", "1", "--out", "{data}/old-compare"],
        ["--out {data}/old-compare: holds a comparison already"],
    ),
    (
        "sync-not-a-run-directory",
        ["sync", "{data}/empty"],
        ["{data}/empty: not a run directory of foresight track, compare or sweep"],
    ),
    (
        "resume-nothing-to-resume",
        ["track", "--task", "ioi", "--out", "{data}", "--name", "empty", "--resume"],
        ["{data}/empty: nothing to resume (no run.json)"],
    ),
    (
        "track-unknown-dtype",
        ["track", "--task", "ioi", "--dtype", "fp8"],
        ["--dtype: choose from float32, bfloat16, float16, float64, not 'fp8'"],
    ),
    ("evaluate-bad-device", ["evaluate", "--device", "tpu"], ["--device 'tpu': choose from auto", "cuda:N"]),
    (
        "finetune-float16-full",
        ["finetune", "--task", "ioi", "--strategy", "static", "--mode", "full", "--dtype", "float16"],
        ["--dtype: float16 trains only with mode lora"],
    ),
    (
        "track-unknown-tracking-copy",
        ["track", "--task", "ioi", "--tracking-copy", "maybe"],
        ["--tracking-copy"],
    ),
    ("compare-absent-gpu", ["compare", "--task", "ioi", "--device", "cuda:99"], ["--device 'cuda:99': "]),
    # sizes bounded by the data and by memory
    (
        "evaluate-n-beyond-the-distinct-lines",
        ["evaluate", "--task", "{data}/twenty.jsonl", "--n", "500"],
        ["--n 500: task 'twenty' has 20 distinct held-out lines ({data}/twenty.jsonl)"],
    ),
    (
        "evaluate-twenty-copies-of-one-line",
        ["evaluate", "--task", "{data}/copies.jsonl", "--n", "8"],
        ["{data}/copies.jsonl:3: repeats line 2 (20 copies of one pair"],
    ),
    (
        "evaluate-n-beyond-memory",
        ["evaluate", "--task", "ioi", "--n", "100000000"],
        ["--n 100000000: evaluation would need about", "GiB are available"],
    ),
    (
        "track-batch-size-beyond-the-data",
        ["track", "--task", "ioi", "--steps", "4", "--every", "2", "--batch-size", "10000000"],
        ["--batch-size 10000000: larger than the 4000 training examples"],
    ),
    # the model against its tokenizer
    (
        "evaluate-embedding-smaller-than-the-vocabulary",
        ["evaluate", "--model", "{data}/small-embedding", "--task", "ioi", "--n", "4"],
        ["model directory {data}/small-embedding: the embedding has", "rows, the tokenizer"],
    ),
    (
        "track-embedding-smaller-than-the-vocabulary",
        ["track", "--model", "{data}/small-embedding", "--task", "ioi", "--steps", "4", "--every", "2"],
        ["model directory {data}/small-embedding: the embedding has"],
    ),
    (
        "evaluate-an-encoder-as-a-causal-lm",
        ["evaluate", "--model", "{data}/bert-mlm", "--task", "ioi", "--n", "4"],
        ["model directory {data}/bert-mlm: BertForMaskedLM is not a causal LM"],
    ),
    # settings that would give a wrong answer silently
    (
        "compare-a-strategy-twice",
        [
            "compare",
            "--task",
            "ioi",
            "--strategies",
            "free,free",
            "--seeds",
            "1",
            "--steps",
            "4",
            "--every",
            "2",
            "--out",
            "cmp",
        ],
        ["--strategies free,free: names 'free' twice"],
    ),  # fmt: skip
    (
        "finetune-dynamic-that-never-reselects",
        ["finetune", "--task", "ioi", "--strategy", "dynamic", "--steps", "4", "--every", "8", "--out", "ft"],
        ["--every: 8 is not below steps (4): strategy dynamic would never re-select"],
    ),
    (
        "compare-dynamic-that-never-reselects",
        [
            "compare",
            "--task",
            "ioi",
            "--strategies",
            "free,dynamic",
            "--seeds",
            "1",
            "--steps",
            "4",
            "--every",
            "8",
            "--out",
            "cmp",
        ],
        ["--every: 8 is not below steps (4): strategy dynamic"],
    ),  # fmt: skip
    # output directories: names and owners
    (
        "track-name-over-the-file-system-limit",
        ["track", "--task", "ioi", "--steps", "4", "--every", "2", "--name", "x" * 300],
        ["--out runs/xxx", "has 300 bytes, the file system allows"],
    ),
    (
        "compare-into-a-tracked-run",
        [
            "compare",
            "--task",
            "ioi",
            "--seeds",
            "1",
            "--steps",
            "4",
            "--every",
            "2",
            "--out",
            "{data}/existing-run",
        ],
        ["--out {data}/existing-run: holds a tracked run (foresight track) (run.json)"],
    ),  # fmt: skip
    (
        "track-into-a-comparison",
        [
            "track",
            "--task",
            "ioi",
            "--steps",
            "4",
            "--every",
            "2",
            "--out",
            "{data}",
            "--name",
            "old-compare",
        ],
        ["--out {data}/old-compare: holds a comparison (foresight compare)"],
    ),
    (
        "train-into-an-existing-forecaster",
        ["forecast", "train", "--trajectories", "{data}/corpus", "--out", "{data}/forecaster"],
        ["--out {data}/forecaster: holds a forecaster already (pass --overwrite to replace it)"],
    ),
    (
        "train-inside-a-tracked-run",
        ["forecast", "train", "--trajectories", "{data}/corpus", "--out", "{data}/existing-run/fc"],
        ["--out {data}/existing-run/fc: lies inside {data}/existing-run, the directory of a tracked run"],
    ),
    # training data of its own (--train-data)
    (
        "track-train-data-bad-json",
        ["track", "--task", "ioi", "--train-data", "{data}/train_bad_json.jsonl"],
        ["{data}/train_bad_json.jsonl:2: not valid JSON"],
    ),
    (
        "track-train-data-unknown-field",
        ["track", "--task", "ioi", "--train-data", "{data}/train_unknown_field.jsonl"],
        ["{data}/train_unknown_field.jsonl:2: unknown field 'id'"],
    ),
    (
        "track-train-data-empty-completion",
        ["track", "--task", "ioi", "--train-data", "{data}/train_empty_completion.jsonl"],
        ["{data}/train_empty_completion.jsonl:2: empty completion"],
    ),
    (
        "track-train-data-two-formats",
        ["track", "--task", "ioi", "--train-data", "{data}/train_mixed.jsonl"],
        ["{data}/train_mixed.jsonl:2: a text row among prompt-completion rows"],
    ),
    (
        "track-train-data-messages-without-chat-template",
        ["track", "--task", "ioi", "--train-data", "{data}/train_chat.jsonl"],
        ["{data}/train_chat.jsonl: rows hold messages, but the tokenizer has no chat template"],
    ),
    (
        "track-train-data-missing",
        ["track", "--task", "ioi", "--train-data", "{data}/nope.jsonl"],
        ["{data}/nope.jsonl: no such file or directory"],
    ),
    (
        "track-max-length-zero",
        ["track", "--task", "ioi", "--train-data", "{data}/train_chat.jsonl", "--max-length", "0"],
        ["--max-length must be at least 1, not 0"],
    ),
    (
        "track-unknown-mode",
        ["track", "--task", "ioi", "--mode", "half"],
        ["--mode: choose from full, lora, not 'half'"],
    ),
    (
        "track-resume-on-other-training-data",
        [
            "track",
            "--task",
            "ioi",
            "--out",
            "{data}",
            "--name",
            "existing-run",
            "--resume",
            "--train-data",
            "{data}/train_ok.jsonl",
            "--batch-size",
            "1",
        ],
        [
            "{data}/existing-run: started on the tasks' own examples, resumed on --train-data "
            "{data}/train_ok.jsonl (digest",
        ],
    ),
    (
        "track-lora-target-the-model-lacks",
        ["track", "--task", "ioi", "--mode", "lora", "--lora-targets", "q_proj,qq_proj"],
        ["--lora-targets q_proj,qq_proj: model 'default' has no module 'qq_proj'"],
    ),
]


@pytest.mark.parametrize(("args", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gives_one_error_line(
    cli: Callable[..., Result], data: Path, tmp_path: Path, args: list[str], fragments: list[str]
) -> None:
    """One error line, and nothing written: the working directory (where relative --out paths
    and the MLflow store would go) stays empty."""
    result = cli(*(a.replace("{data}", str(data)) for a in args))
    assert_one_error_line(result, *(f.replace("{data}", str(data)) for f in fragments))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["sft", "track", "forecast-train", "finetune"])
def test_unwritable_output_directory(
    cli: Callable[..., Result], data: Path, tmp_path: Path, command: str
) -> None:
    out = unwritable_dir(tmp_path)
    args = {
        "sft": ["sft", "--task", "ioi", "--steps", "1", "--out", out],
        "track": ["track", "--task", "ioi", "--steps", "1", "--every", "1", "--out", out],
        "forecast-train": ["forecast", "train", "--trajectories", data / "corpus", "--out", out],
        "finetune": ["finetune", "--task", "ioi", "--strategy", "static", "--steps", "1", "--out", out],
    }[command]
    assert_one_error_line(cli(*args), f"--out {out}: {out.parent} is not")
    assert not out.exists()


def test_existing_run_directory_is_left_untouched(cli: Callable[..., Result], data: Path) -> None:
    run = data / "existing-run"
    before = digest(run)
    result = cli(
        "track", "--task", "ioi", "--steps", "1", "--every", "1", "--out", data, "--name", "existing-run"
    )
    assert_one_error_line(result, f"{run}: holds a tracked run already", "--resume")
    assert digest(run) == before


def test_failed_training_keeps_the_forecaster_already_saved(
    cli: Callable[..., Result], data: Path, tmp_path: Path
) -> None:
    saved = shutil.copytree(data / "forecaster", tmp_path / "fc")
    before = digest(saved)
    result = cli("forecast", "train", "--trajectories", data / "nan", "--out", saved, "--overwrite")
    assert_one_error_line(result, "non-finite score nan")
    assert digest(saved) == before


@pytest.mark.parametrize("command", ["track", "compare"])
def test_unreachable_tracking_server_fails_before_training(
    cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: str
) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    args = {
        "track": ["track", "--task", "ioi", "--steps", "1", "--every", "1", "--out", tmp_path / "runs"],
        "compare": ["compare", "--task", "ioi", "--seeds", "1", "--steps", "1", "--out", tmp_path / "runs"],
    }[command]
    assert_one_error_line(cli(*args), f"MLflow tracking server {uri} is not reachable")
    assert not (tmp_path / "runs").exists()  # nothing started


def _pending_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"run_id": "0123456789abcdef0123456789abcdef"}))
    entry = {"run_id": "0123456789abcdef0123456789abcdef", "metrics": [["loss", 1.0, 1000, 2]]}
    (run / PENDING_FILE).write_text(json.dumps(entry) + "\n")
    return run


def test_sync_to_an_unreachable_server_keeps_the_queue(
    cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run = _pending_run(tmp_path)
    before = digest(run)
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert_one_error_line(cli("sync", run), f"MLflow tracking server {uri} is not reachable")
    assert digest(run) == before


def test_sync_to_a_store_that_does_not_exist_creates_none(
    cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run = _pending_run(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/elsewhere.db")
    assert_one_error_line(cli("sync", run), f"{tmp_path}/elsewhere.db: no MLflow store")
    assert not (tmp_path / "elsewhere.db").exists()


def test_sync_of_a_run_the_store_does_not_hold_keeps_the_queue(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    run = _pending_run(tmp_path)
    before = digest(run)
    MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).search_experiments()  # the store exists
    line = assert_one_error_line(cli("sync", run), f"{run}: sync to sqlite:///", PENDING_FILE)
    assert "0123456789abcdef0123456789abcdef" in line
    assert digest(run) == before


def test_the_error_line_is_the_whole_stderr_for_multiline_messages_and_brackets(
    cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    import foresight.tasks

    def broken(name: str) -> None:
        raise ValueError("first line\n[Errno 2] second [bold]line[/x]")

    monkeypatch.setattr(foresight.tasks, "get_task", broken)
    line = assert_one_error_line(cli("evaluate", "--task", "ioi"))
    assert line == "error: first line [Errno 2] second [bold]line[/x]"


def test_debug_mode_shows_the_traceback(cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORESIGHT_DEBUG", "1")
    with pytest.raises(ValueError, match="unknown task 'nosuch'"):
        cli("evaluate", "--task", "nosuch")


def test_helpers_detect_what_they_claim(tmp_path: Path) -> None:
    """The checks above must be able to fail: a traceback or a second line is caught."""
    with pytest.raises(AssertionError):
        assert_one_error_line(Result(2, "", "Traceback (most recent call last):\nerror: x\n"))
    with pytest.raises(AssertionError):
        assert_one_error_line(Result(2, "", "error: x\nerror: y\n"))
    with pytest.raises(AssertionError):
        assert_one_error_line(Result(1, "", "error: x\n"))
    out = unwritable_dir(tmp_path)
    with pytest.raises(OSError):
        out.mkdir(parents=True)


def _serve(health: int, api: int) -> http.server.HTTPServer:
    """A local HTTP server answering /health with status `health` and everything else with `api`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.send_response(health if self.path == "/health" else api)
            self.end_headers()

        do_GET = do_POST = _answer  # noqa: N815 (the http.server API)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize(("health", "api"), [(503, 503), (200, 503)], ids=["all-503", "api-503"])
def test_tracking_server_answering_503_fails_fast_before_training(
    cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, health: int, api: int
) -> None:
    server = _serve(health, api)
    uri = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    try:
        start = time.perf_counter()
        result = cli("track", "--task", "ioi", "--steps", "1", "--every", "1", "--out", tmp_path / "runs")
        elapsed = time.perf_counter() - start
    finally:
        server.shutdown()
    assert_one_error_line(result, f"MLflow tracking server {uri} answered", "with HTTP 503")
    assert elapsed < 30
    assert not (tmp_path / "runs").exists()


def test_a_run_directory_is_claimed_by_one_track_at_a_time(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    run_dir = tmp_path / "runs" / "r"
    lock = trackers.run._claim(run_dir, resume=False)  # another `foresight track` holds it
    try:
        result = cli(
            "track", "--task", "ioi", "--steps", "1", "--every", "1", "--out", run_dir.parent, "--name", "r"
        )
        assert_one_error_line(result, f"{run_dir}: another foresight track is running in it")
        assert sorted(p.name for p in run_dir.iterdir()) == [trackers.run.LOCK_FILE]
        (run_dir / trackers.run.RUN_FILE).write_text("{}")  # what the holder writes
    finally:
        os.close(lock)
    with pytest.raises(trackers.run.RunDirError, match="holds a run already"):
        trackers.run._claim(run_dir, resume=False)  # checked again under the lock
    os.close(trackers.run._claim(run_dir, resume=True))  # free again: a resume may take it


@dataclass
class FakeTraining:
    """What the fake training of `fake_training` saw (run id, run status, resume) per call, and
    the error it raises next (None: it returns)."""

    calls: list[dict]
    error: BaseException | None = None


@pytest.fixture()
def fake_training(monkeypatch: pytest.MonkeyPatch) -> FakeTraining:
    """Replaces the training of `foresight track` (trackers.run._train) by a step that records
    the MLflow run's status while it 'trains', then raises `error` if set."""
    fake = FakeTraining([])

    def train(*args: object) -> None:  # the arguments of trackers.run._train
        resume, logger = args[7], args[8]
        assert isinstance(logger, SafeLogger)
        status = MlflowClient().get_run(logger.run_id).info.status
        fake.calls.append({"run_id": logger.run_id, "status": status, "resume": resume})
        if fake.error is not None:
            raise fake.error

    monkeypatch.setattr(trackers.run, "_train", train)
    return fake


def _run_id(run_dir: Path) -> str:
    return json.loads((run_dir / trackers.run.RUN_FILE).read_text())["run_id"]


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [(None, 0, "FINISHED"), (KeyboardInterrupt(), 130, "KILLED"), (RuntimeError("boom"), None, "FAILED")],
    ids=["finished", "ctrl-c", "crash"],
)
def test_the_tracked_run_is_running_while_it_trains_and_ends_truthfully(
    cli: Callable[..., Result],
    fake_training: FakeTraining,
    tmp_path: Path,
    error: BaseException | None,
    code: int | None,
    status: str,
) -> None:
    fake_training.error = error
    args = (
        "track",
        "--task",
        "ioi",
        "--steps",
        "2",
        "--every",
        "1",
        "--out",
        tmp_path / "runs",
        "--name",
        "r",
    )
    if isinstance(error, RuntimeError):  # not a user error: the traceback is the report
        with pytest.raises(RuntimeError, match="boom"):
            cli(*args)
    else:
        result = cli(*args)
        assert result.code == code, result.err
        if code == 130:
            assert [line for line in result.err.splitlines() if line.strip()] == ["error: interrupted"]
    run_id = _run_id(tmp_path / "runs" / "r")
    assert fake_training.calls == [{"run_id": run_id, "status": "RUNNING", "resume": False}]
    assert MlflowClient().get_run(run_id).info.status == status


def test_resume_logs_to_the_tracking_uri_the_run_recorded(
    cli: Callable[..., Result], fake_training: FakeTraining, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    args = (
        "track",
        "--task",
        "ioi",
        "--steps",
        "2",
        "--every",
        "1",
        "--out",
        tmp_path / "a" / "runs",
        "--name",
        "r",
    )
    assert cli(*args).code == 0
    record = tmp_path / "a" / "runs" / "r" / "run.json"
    record.write_text(json.dumps(json.loads(record.read_text()) | {"finished": False}))  # as if killed
    monkeypatch.chdir(tmp_path / "b")  # elsewhere, without MLFLOW_TRACKING_URI
    result = cli(*args, "--resume")
    assert result.code == 0, result.err
    assert list((tmp_path / "b").iterdir()) == []  # no new store here
    run_id = _run_id(tmp_path / "a" / "runs" / "r")
    assert fake_training.calls[1] == {"run_id": run_id, "status": "RUNNING", "resume": True}
    assert MlflowClient(f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}").get_run(run_id).info.status == "FINISHED"


def test_an_error_on_a_fresh_store_is_one_line_without_mlflow_info_lines(tmp_path: Path) -> None:
    """A new SQLite store (an empty file) gets its tables created; MLflow and alembic announce
    that on INFO lines, which must not print before the error line."""
    (tmp_path / "fresh.db").touch()
    root = str(Path(__file__).resolve().parents[1])  # this checkout's packages, whatever is installed
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/fresh.db", "PYTHONPATH": root}
    env.pop("FORESIGHT_DEBUG", None)
    done = subprocess.run(
        [sys.executable, "-m", "foresight.app.cli", "report", "--experiment", "nosuch"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert (tmp_path / "fresh.db").stat().st_size > 0  # the store was initialised
    assert_one_error_line(Result(done.returncode, done.stdout, done.stderr), "no MLflow experiment 'nosuch'")


def _read_only(statvfs: Callable[..., os.statvfs_result]) -> Callable[..., os.statvfs_result]:
    """os.statvfs as on a file system mounted read-only (this test's user may write anywhere)."""

    def fake(path: object) -> os.statvfs_result:
        real = statvfs(path)
        return os.statvfs_result((*real[:8], real.f_flag | os.ST_RDONLY, *real[9:]))

    return fake


@pytest.mark.parametrize(
    ("uri", "fragments"),
    [
        ("postgresql://user:secret@127.0.0.1:{port}/db", ["postgresql://user:***@", "no database answers"]),
        ("file://{tmp}/mlruns", ["MLflow no longer logs to a file store"]),
        ("{tmp}/mlruns", ["MLflow no longer logs to a file store"]),
        ("foo://bar", ["unknown scheme 'foo'"]),
        (
            "sqlite:///{tmp}/a-file/mlflow.db",
            ["the SQLite store cannot be written", "a-file is not a directory"],
        ),
        ("sqlite:///{tmp}/mlflow.db", ["the SQLite store cannot be written", "read-only file system"]),
    ],
    ids=[
        "postgres-nothing-listening",
        "file-store",
        "plain-path",
        "unknown-scheme",
        "below-a-file",
        "read-only",
    ],
)
@pytest.mark.parametrize("command", ["track", "compare", "report"])
def test_a_tracking_uri_that_cannot_take_runs_is_one_line_and_leaves_nothing(
    cli: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    uri: str,
    fragments: list[str],
    command: str,
) -> None:
    """Scheme, reachability (a database with nothing listening fails in seconds, not after
    MLflow's retries) and writability, checked before a model loads: no run directory, no
    .lock, no store."""
    (tmp_path / "a-file").write_text("")
    uri = uri.format(port=free_port(), tmp=tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    if "read-only file system" in fragments:
        monkeypatch.setattr(os, "statvfs", _read_only(os.statvfs))
    args = {
        "track": ["track", "--task", "ioi", "--steps", "4", "--every", "2", "--out", tmp_path / "runs"],
        "compare": ["compare", "--task", "ioi", "--seeds", "1", "--steps", "4", "--every", "2", "--out",
                    tmp_path / "cmp"],
        "report": ["report", "--experiment", "x"],
    }[command]  # fmt: skip
    assert_one_error_line(cli(*args), "MLFLOW_TRACKING_URI", *fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_a_database_with_nothing_listening_is_refused_in_seconds() -> None:
    start = time.perf_counter()
    with pytest.raises(ValueError, match="no database answers"):
        check_tracking_uri(f"postgresql://u:p@127.0.0.1:{free_port()}/db")
    assert time.perf_counter() - start < 5


def test_resuming_a_finished_run_changes_nothing(cli: Callable[..., Result], tmp_path: Path) -> None:
    """It used to train one step past --steps and replace model/."""
    args = ["track", "--task", "ioi", "--steps", "2", "--every", "1", "--n-pairs", "4", "--batch-size", "4",
            "--out", tmp_path / "runs", "--name", "r", "--tracking-copy", "off"]  # fmt: skip
    assert cli(*args).code == 0
    run = tmp_path / "runs" / "r"
    before, store = digest(run), digest(tmp_path)
    assert json.loads((run / "run.json").read_text())["finished"] is True
    assert_one_error_line(cli(*args, "--resume"), f"{run}: the run finished", "nothing to resume")
    assert digest(run) == before
    assert digest(tmp_path) == store  # the MLflow store too


def _sweep_config(tmp_path: Path, out: Path) -> Path:
    config = {"experiment": "sweep-bad", "tasks": ["ioi"], "strategies": ["free"], "seeds": [0]}
    config |= {"out": str(out), "finetune": {"steps": 2, "every": 1, "batch_size": 4, "n_eval": 8}}
    (tmp_path / "sweep.json").write_text(json.dumps(config))
    return tmp_path / "sweep.json"


def test_a_sweep_around_an_earlier_comparison_leaves_it_intact(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    """`out` set to the folder around `compare --out X/ioi`: the sweep's task ioi would have
    deleted and rewritten that comparison's trial directory and its comparison.md."""
    earlier = tmp_path / "X" / "ioi"
    (earlier / "free-s0").mkdir(parents=True)
    (earlier / "free-s0" / "metrics.csv").write_text("step,accuracy\n2,0.5\n")
    (earlier / "comparison.md").write_text("# the earlier comparison\n")
    config = _sweep_config(tmp_path, tmp_path / "X")
    before = digest(tmp_path)
    line = assert_one_error_line(cli("sweep", config, "--workers", "1"), f"{earlier} holds a comparison")
    assert "would overwrite" in line
    assert digest(tmp_path) == before
    assert not (tmp_path / "X" / SWEEP_FILE).exists()


def test_a_sweep_inside_a_tracked_run_is_refused(
    cli: Callable[..., Result], data: Path, tmp_path: Path
) -> None:
    config = _sweep_config(tmp_path, data / "existing-run" / "sweep")
    before = digest(data / "existing-run")
    assert_one_error_line(cli("sweep", config, "--workers", "1"), "lies inside", "tracked run")
    assert digest(data / "existing-run") == before
    assert sorted(tmp_path.iterdir()) == [config]


def test_a_ray_address_with_nothing_there_fails_fast_before_any_run(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    """It used to wait past 150 s and leave a RUNNING parent run in a new store."""
    config = _sweep_config(tmp_path, tmp_path / "out")
    port = free_port()
    start = time.perf_counter()
    result = cli("sweep", config, "--address", f"127.0.0.1:{port}")
    assert time.perf_counter() - start < 60  # the checks of the config included
    assert_one_error_line(result, f"--address 127.0.0.1:{port}: no Ray cluster answers")
    assert sorted(tmp_path.iterdir()) == [config]  # no store, no out


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["train", "--model", "nosuch", "--out", "fc"], "--model 'nosuch'"),
        (["train", "--hold-out", "nosuch", "--out", "fc"], "--hold-out nosuch"),
        (["train", "--prefix", "9", "--out", "fc"], "--prefix 9"),
        (["eval", "--model", "nosuch"], "--model 'nosuch'"),
        (["eval", "--prefix", "9"], "--prefix 9"),
    ],
    ids=["train-model", "train-hold-out", "train-prefix", "eval-model", "eval-prefix"],
)
def test_forecasting_requests_are_refused_before_the_corpus_is_read(
    cli: Callable[..., Result],
    data: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    args: list[str],
    fragment: str,
) -> None:
    """Reading a 180-run corpus took 68-73 s before these were refused; now they are refused from
    the manifests and file names (the corpus loader fails this test if called), in < 5 s of CPU."""
    import foresight.app.forecast

    def never(root: object) -> None:
        raise AssertionError("the corpus was read")

    monkeypatch.setattr(foresight.app.forecast, "load_corpus", never)
    start = time.process_time()
    result = cli("forecast", args[0], "--trajectories", data / "corpus", *args[1:])
    assert time.process_time() - start < 5
    assert_one_error_line(result, fragment)
    assert list(tmp_path.iterdir()) == []


def test_a_bad_word_near_the_end_of_a_large_jsonl_is_refused_in_seconds(tmp_path: Path) -> None:
    """100,000 lines, an unknown word on line 99,991: 31-35 s before; < 5 s of CPU now."""
    from foresight.app.validation import check_tasks

    lines = []
    for i in range(100_000):
        digits = " ".join(str(i))
        word = "zebra" if i == 99_990 else str(i % 10)
        lines.append(json.dumps({"clean": f"{digits} + {word} =", "corrupted": f"{digits} + {(i + 1) % 10} =",
                                 "answer": str(i % 10), "wrong": str((i + 1) % 10),
                                 "split": "eval" if i % 2 else "train"}))  # fmt: skip
    path = Path(_jsonl(tmp_path / "large.jsonl", lines))
    start = time.process_time()
    with pytest.raises(ValueError, match=f"{path}:99991: .*does not know 'zebra'"):
        check_tasks([str(path)], "default")
    assert time.process_time() - start < 5
