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


@pytest.mark.parametrize("name", ["default", "default-gpt2"])
def test_above_chance_but_imperfect_on_most_tasks_before_sft(name: str) -> None:
    """On at least 5 of the 9 tasks the model knows the skill before SFT, but not all of it:
    two-way accuracy (right vs wrong answer, chance 0.5) is significantly above chance
    (one-sided binomial test, p < 0.01) and top-1 accuracy is below 0.9."""
    model, tokenizer = load_model(name)
    verdicts = {}
    for name_ in task_names():
        task = get_task(name_)
        two_way = choice_accuracy(model, tokenizer, task.attribution_pairs(N_PAIRS))
        p_value = binomtest(round(two_way * N_PAIRS), N_PAIRS, 0.5, alternative="greater").pvalue
        top1 = accuracy(model, tokenizer, task.eval_examples(N_PAIRS))
        verdicts[name_] = (p_value < 0.01 and top1 < 0.9, round(two_way, 3), round(top1, 3))
    assert sum(ok for ok, _, _ in verdicts.values()) >= 5, verdicts
