"""The shipped models load offline and know the skills before any SFT."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from scipy.stats import binomtest

from foresight.evaluation import accuracy, choice_accuracy
from foresight.models import load_model
from foresight.tasks import get_task, task_names

N_PAIRS = 200


@pytest.mark.parametrize("name", ["default", "default-gpt2"])
def test_loads_offline_with_auto_classes(name: str) -> None:
    code = (
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "from foresight.models import SHIPPED\n"
        f"path = SHIPPED[{name!r}]\n"
        "model = AutoModelForCausalLM.from_pretrained(path)\n"
        "tokenizer = AutoTokenizer.from_pretrained(path)\n"
        "print(type(model).__name__, len(tokenizer))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": "/nonexistent"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    expected = "LlamaForCausalLM" if name == "default" else "GPT2LMHeadModel"
    assert out.stdout.split()[0] == expected


def _before_sft(name: str) -> dict[str, tuple[bool, float, float]]:
    """Per task: (two-way accuracy significantly above chance 0.5 (one-sided binomial
    test, p < 0.01), two-way accuracy, top-1 accuracy) of a shipped model."""
    model, tokenizer = load_model(name)
    verdicts = {}
    for name_ in task_names():
        task = get_task(name_)
        two_way = choice_accuracy(model, tokenizer, task.attribution_pairs(N_PAIRS))
        p_value = binomtest(round(two_way * N_PAIRS), N_PAIRS, 0.5, alternative="greater").pvalue
        top1 = accuracy(model, tokenizer, task.eval_examples(N_PAIRS))
        verdicts[name_] = (bool(p_value < 0.01), round(two_way, 3), round(top1, 3))
    return verdicts


def test_default_is_above_chance_but_imperfect_on_most_tasks_before_sft() -> None:
    """On at least 5 of the 9 tasks the default model knows the skill before SFT, but not
    all of it: two-way accuracy significantly above chance and top-1 accuracy below 0.9."""
    verdicts = _before_sft("default")
    assert sum(above and top1 < 0.9 for above, _, top1 in verdicts.values()) >= 5, verdicts


def test_gpt2_twin_beats_chance_on_several_tasks_before_sft() -> None:
    """The twin, pretrained the same way, learns less: two-way accuracy significantly above
    chance on at least 4 of the 9 tasks (not on the copying tasks: see README)."""
    verdicts = _before_sft("default-gpt2")
    assert sum(above for above, _, _ in verdicts.values()) >= 4, verdicts


def test_batched_predictions_are_each_prompts_own() -> None:
    """`predict_next` (padded batches, logits at each row's last position only) predicts what
    each prompt run alone predicts: the argmax of its full forward's last logits."""
    import torch

    from foresight.encoding import prompt_ids
    from foresight.evaluation import predict_next

    model, tokenizer = load_model("default")
    prompts = [ex.prompt for t in ("ioi", "induction") for ex in get_task(t).eval_examples(12, seed=1)]
    with torch.no_grad():
        alone = [model(input_ids=torch.tensor([prompt_ids(tokenizer, p)])).logits[0, -1] for p in prompts]
    alone = [logits.argmax().item() for logits in alone]
    assert len({len(prompt_ids(tokenizer, p)) for p in prompts}) > 1
    assert predict_next(model, tokenizer, prompts, batch_size=7) == tokenizer.convert_ids_to_tokens(alone)
