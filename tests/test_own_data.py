"""A user's own SFT data and trainer: `foresight.sft_data`, `foresight track --train-data`,
`CircuitTracker.for_model` inside TRL's SFTTrainer and a plain transformers Trainer (full and
LoRA), on a tiny random Llama with the word-level tokenizer, offline."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import datasets
import mlflow
import pandas as pd
import pytest
import torch
import trl  # the [trl] extra, which `make test` installs
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service import utils as tracking_utils
from peft import LoraConfig, get_peft_model
from transformers import DataCollatorForSeq2Seq, LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

from foresight.app.cli import main
from foresight.factory.tokenizer import build_tokenizer
from foresight.metric_names import mlflow_names
from foresight.models import load_model
from foresight.sft_data import IGNORE, SFTDataError, load_sft_data
from trackers.store import MANIFEST, load_trajectory
from trackers.tracker import CircuitTracker

# user turns end with "->"; the assistant turn and its EOS are the generation block
MARKED = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'assistant' %}{% generation %}"
    "{{ m['content'] }} {{ eos_token }}{% endgeneration %}{% else %}{{ m['content'] }} -> {% endif %}"
    "{% endfor %}"
)
PLAIN = MARKED.replace("{% generation %}", "").replace("{% endgeneration %}", "")
WORDS = ["red", "blue", "green", "cat", "dog", "tree", "river", "moon", "sun", "star"]
STEPS, EVERY, BATCH, LR, N_PAIRS = 2, 2, 8, 1e-2, 8


def conversations(n: int, seed: int = 0) -> list[dict]:
    """`n` two-turn chats: the user names two words, the assistant repeats them."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.sample(WORDS, 2)
        user, assistant = (
            {"role": "user", "content": f"say {a} and {b}"},
            {"role": "assistant", "content": f"{a} {b}"},
        )
        rows.append({"messages": [user, assistant]})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """conftest's tiny Llama in float64 (so that TRL's fused loss and the Trainer's cross-entropy
    agree far below the tolerance) with the word-level tokenizer and the MARKED chat template."""
    tokenizer = build_tokenizer()
    tokenizer.chat_template = MARKED
    path = tmp_path_factory.mktemp("chat-llama")
    LlamaForCausalLM.from_pretrained(tiny_model_dir).to(torch.float64).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite MLflow store for the module's runs (creating one takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


def run_cli(monkeypatch: pytest.MonkeyPatch, *args: object) -> int:
    """`foresight ARGS...` through main(); its exit code."""
    monkeypatch.setattr(sys, "argv", ["foresight", *map(str, args)])
    try:
        main()
    except SystemExit as done:
        return done.code
    return 0


def checkpoints(trajectory: Path) -> pd.DataFrame:
    return load_trajectory(trajectory).sort_values(["step", "level", "component"]).reset_index(drop=True)


def test_trl_sft_trainer_with_for_model_writes_the_trajectories_of_track(
    chat_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str
) -> None:
    """TRL SFTTrainer (assistant-only loss on a chat dataset) + CircuitTracker.for_model, and
    `foresight track --train-data` with the same seed and settings: every stored score within
    1e-6 of its checkpoint's largest |score| (per level); the data's digest and size reach the
    manifest and the MLflow run's inputs."""
    rows = conversations(50)
    data = write_jsonl(tmp_path / "chat.jsonl", rows)
    uri = store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    code = run_cli(
        monkeypatch, "track", "--model", chat_model, "--task", "ioi", "--train-data", data, "--steps", STEPS,
        "--every", EVERY, "--batch-size", BATCH, "--lr", LR, "--n-pairs", N_PAIRS, "--out", tmp_path,
        "--name", "cli", "--device", "cpu", "--dtype", "float64", "--tracking-copy", "off",
    )  # fmt: skip
    assert code == 0

    model, tokenizer = load_model(str(chat_model), "float64", "cpu")
    tracker = CircuitTracker.for_model(
        model, tokenizer, ["ioi"], tmp_path / "trl", every=EVERY, n_pairs=N_PAIRS, mlflow=False
    )
    args = trl.SFTConfig(
        output_dir=str(tmp_path / "trl-trainer"), max_steps=STEPS, per_device_train_batch_size=BATCH,
        learning_rate=LR, warmup_steps=10, lr_scheduler_type="linear", seed=0, data_seed=0, bf16=False,
        gradient_checkpointing=False, assistant_only_loss=True, max_length=None, report_to=[],
        use_cpu=True, save_strategy="no", disable_tqdm=True,
    )  # fmt: skip
    trainer = trl.SFTTrainer(
        model=model, args=args, train_dataset=datasets.Dataset.from_list(rows), processing_class=tokenizer,
        callbacks=[tracker],
    )  # fmt: skip
    ours = load_sft_data(data, tokenizer).dataset  # TRL tokenized the raw messages itself
    assert trainer.train_dataset["input_ids"] == ours["input_ids"]
    assert trainer.train_dataset["labels"] == ours["labels"]
    trainer.train()

    cli, via_trl = (checkpoints(tmp_path / run / "trajectories" / "ioi") for run in ("cli", "trl"))
    assert list(cli.step.unique()) == [0, 2]
    assert cli[["step", "level", "component"]].equals(via_trl[["step", "level", "component"]])
    scale = cli.score.abs().groupby([cli.step, cli.level]).transform("max")
    assert ((cli.score - via_trl.score).abs() <= 1e-6 * scale).all()
    moved = cli[cli.step == 2].score.to_numpy() - cli[cli.step == 0].score.to_numpy()
    assert abs(moved).max() > 1e-3 * scale.max()  # training moved the scores: the check can fail

    manifest = json.loads((tmp_path / "cli" / "trajectories" / "ioi" / MANIFEST).read_text())
    described = load_sft_data(data, tokenizer).describe()
    assert manifest["train_data"] == described and described["rows"] == 50
    run_id = json.loads((tmp_path / "cli" / "run.json").read_text())["run_id"]
    (logged,) = MlflowClient(uri).get_run(run_id).inputs.dataset_inputs
    assert logged.dataset.digest == described["digest"] and logged.dataset.name == "chat.jsonl"
    assert json.loads(logged.dataset.profile)["num_rows"] == 50


def test_completion_only_loss_masks_the_prompt(tmp_path: Path) -> None:
    """A hand-built prompt/completion row: labels IGNORE on the prompt, the completion and EOS
    kept; the model's loss with those labels is the mean negative log-probability of the
    completion tokens alone, computed here from the logits."""
    tokenizer = build_tokenizer()
    data = write_jsonl(tmp_path / "pc.jsonl", [{"prompt": "3 plus 4 equals", "completion": " 7 ."}])
    row = load_sft_data(data, tokenizer).dataset[0]
    tokens = ["<bos>", "3", "plus", "4", "equals", "7", ".", "<eos>"]
    ids = tokenizer.convert_tokens_to_ids(tokens)
    assert row["input_ids"] == ids
    assert row["labels"] == [IGNORE] * 5 + ids[5:]
    assert load_sft_data(data, tokenizer, completion_only=False).dataset[0]["labels"] == ids

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    model = LlamaForCausalLM(config).double().eval()
    input_ids, labels = torch.tensor([row["input_ids"]]), torch.tensor([row["labels"]])
    loss = model(input_ids=input_ids, labels=labels).loss
    log_probs = torch.log_softmax(model(input_ids=input_ids).logits[0], -1)
    expected = -sum(log_probs[i - 1, ids[i]] for i in (5, 6, 7)) / 3
    assert torch.allclose(loss, expected.to(loss.dtype))
    text = write_jsonl(tmp_path / "text.jsonl", [{"text": "3 plus 4 equals 7 ."}])
    assert load_sft_data(text, tokenizer).dataset[0]["labels"] == ids  # plain LM loss on every token


@pytest.mark.parametrize("template", [MARKED, PLAIN], ids=["generation-markers", "no-markers"])
def test_chat_template_puts_the_loss_on_assistant_turns(template: str, tmp_path: Path) -> None:
    """With or without {% generation %} markers, exactly the assistant turns (with their EOS)
    carry labels, in a conversation of three turns (hand-built expectation)."""
    tokenizer = build_tokenizer()
    tokenizer.chat_template = template
    turns = [("user", "say red"), ("assistant", "red"), ("user", "say cat and dog"), ("assistant", "cat dog")]
    rows = [{"messages": [{"role": r, "content": c} for r, c in turns]}]
    row = load_sft_data(write_jsonl(tmp_path / "chat.jsonl", rows), tokenizer).dataset[0]
    tokens = [
        "<bos>",
        "say",
        "red",
        "->",
        "red",
        "<eos>",
        "say",
        "cat",
        "and",
        "dog",
        "->",
        "cat",
        "dog",
        "<eos>",
    ]
    trained = {4, 5, 11, 12, 13}
    ids = tokenizer.convert_tokens_to_ids(tokens)
    assert row["input_ids"] == ids
    assert row["labels"] == [t if i in trained else IGNORE for i, t in enumerate(ids)]
    cut = load_sft_data(tmp_path / "chat.jsonl", tokenizer, max_length=5).dataset[0]
    assert cut["input_ids"] == ids[:5] and cut["labels"] == row["labels"][:5]


def test_messages_without_a_chat_template_are_one_clear_error(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "chat.jsonl", conversations(2))
    with pytest.raises(SFTDataError, match=r"chat\.jsonl: rows hold messages, but the tokenizer has no chat"):
        load_sft_data(data, build_tokenizer())


def test_a_datasets_directory_trains_like_its_jsonl(tmp_path: Path) -> None:
    tokenizer = build_tokenizer()
    tokenizer.chat_template = MARKED
    rows = conversations(5)
    datasets.Dataset.from_list(rows).save_to_disk(tmp_path / "saved")
    from_dir = load_sft_data(tmp_path / "saved", tokenizer)
    from_file = load_sft_data(write_jsonl(tmp_path / "chat.jsonl", rows), tokenizer)
    assert from_dir.dataset.to_list() == from_file.dataset.to_list()
    assert from_dir.rows == 5 and from_dir.format == "messages"


def _trained(model: torch.nn.Module, names: list[str], before: dict[str, torch.Tensor]) -> list[str]:
    return [n for n in names if not torch.equal(dict(model.named_parameters())[n].detach(), before[n])]


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_for_model_in_a_plain_trainer_logs_to_one_mlflow_run(
    mode: str, chat_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str
) -> None:
    """A transformers Trainer, full or LoRA (PEFT): the tracker writes its trajectory (regime
    mode recorded) and logs into one MLflow run: the Trainer's own where it opened one (full:
    report_to mlflow), else one it opens and ends (lora); under LoRA only adapter weights
    train and the base weights stay as they were."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "mine")
    monkeypatch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)  # restored after
    # the Trainer's MLflowCallback calls mlflow.set_experiment("mine"): a process-wide experiment
    # (and MLFLOW_EXPERIMENT_ID), restored after so that later tests' runs are not refused
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    mlflow.set_tracking_uri(store)
    model, tokenizer = load_model(str(chat_model), "float64", "cpu")
    if mode == "lora":
        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "o_proj"], lora_dropout=0.0))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    data = load_sft_data(write_jsonl(tmp_path / "chat.jsonl", conversations(16)), tokenizer)
    tracker = CircuitTracker.for_model(
        model, tokenizer, ["ioi"], tmp_path / "run", every=2, n_pairs=4, levels=("node",), n_eval=20
    )
    args = TrainingArguments(
        output_dir=str(tmp_path / "trainer"), max_steps=2, per_device_train_batch_size=8, learning_rate=1e-2,
        report_to=["mlflow"] if mode == "full" else [], use_cpu=True, save_strategy="no",
        disable_tqdm=True, logging_steps=1,
    )  # fmt: skip
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True)
    Trainer(
        model=model, args=args, train_dataset=data.dataset, data_collator=collator, callbacks=[tracker]
    ).train()
    mlflow.end_run()

    trajectory = load_trajectory(tmp_path / "run" / "trajectories" / "ioi")
    assert sorted(trajectory.step.unique()) == [0, 2]
    manifest = json.loads((tmp_path / "run" / "trajectories" / "ioi" / MANIFEST).read_text())
    assert manifest["regime"]["mode"] == mode and manifest["run_id"] == "run-ioi"
    client = MlflowClient()
    trajectories = str((tmp_path / "run" / "trajectories").resolve())
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`foresight.trajectories` = '{trajectories}'",
    )
    (run,) = runs
    assert mlflow_names({"ioi/accuracy": 0.0}).keys() <= run.data.metrics.keys()
    assert run.info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["trajectories"]
    if mode == "full":  # the Trainer's own MLflowCallback logged to the same run
        assert client.get_experiment(run.info.experiment_id).name == "mine" and "epoch" in run.data.metrics
    else:
        assert client.get_experiment(run.info.experiment_id).name == "foresight-track"
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert set(_trained(model, names, before)) == set(names)
    if mode == "lora":
        assert all("lora_" in n for n in names)
        frozen = [n for n in before if n not in names]
        assert not _trained(model, frozen, before)


def test_track_with_lora_and_grad_accum_on_text_rows(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str
) -> None:
    """`foresight track --train-data --mode lora --grad-accum 2`: the manifest says lora, the
    trained adapter is saved (--save-model), every checkpoint is written."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    rows = [{"text": f"{a} and {b}"} for a, b in zip(WORDS, reversed(WORDS), strict=True)]
    data = write_jsonl(tmp_path / "text.jsonl", rows)
    code = run_cli(
        monkeypatch, "track", "--model", tiny_model_dir, "--task", "ioi", "--train-data", data,
        "--steps", 2, "--every", 2, "--batch-size", 4, "--n-pairs", 4, "--out", tmp_path, "--name", "lora",
        "--device", "cpu", "--mode", "lora", "--lora-rank", 2, "--lora-targets", "q_proj,v_proj",
        "--grad-accum", 2, "--tracking-copy", "off", "--save-model",
    )  # fmt: skip
    assert code == 0
    manifest = json.loads((tmp_path / "lora" / "trajectories" / "ioi" / MANIFEST).read_text())
    assert manifest["regime"]["mode"] == "lora" and manifest["config"]["grad_accum"] == 2
    assert manifest["train_data"]["format"] == "text" and manifest["train_data"]["rows"] == 10
    assert sorted(load_trajectory(tmp_path / "lora" / "trajectories" / "ioi").step.unique()) == [0, 2]
    adapter = json.loads((tmp_path / "lora" / "model" / "adapter_config.json").read_text())
    assert adapter["r"] == 2 and set(adapter["target_modules"]) == {"q_proj", "v_proj"}
