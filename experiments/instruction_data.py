"""A small instruction dataset in the default tokenizer's vocabulary: chat conversations, a
quarter of them IOI questions (a task that `experiments/own_data.py` tracks), the rest not
(repeating, copying and counting words, one or two turns), and the chat template they are
rendered with (experiments/data/chat_template.jinja).

    python experiments/instruction_data.py [--n 300] [--seed 0]

Writes experiments/data/instructions.jsonl (one {"messages": [...]} object per line).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from foresight.tasks import get_task

DATA = Path(__file__).parent / "data" / "instructions.jsonl"
# the default tokenizer has none: turns are plain text, an assistant turn ends with EOS and is
# the generation block (the tokens TRL's assistant_only_loss and foresight.sft_data train)
CHAT_TEMPLATE = (DATA.parent / "chat_template.jinja").read_text()
OBJECTS = ["red", "blue", "green", "cat", "dog", "bird", "fish", "tree", "river", "stone", "moon", "sun"]
OBJECTS += ["star", "house", "door", "road", "car", "boat"]


def _turn(rng: random.Random) -> tuple[str, str]:
    """One user question and its answer, not about any tracked task."""
    kind = rng.choice(["say", "copy", "count"])
    if kind == "say":
        a, b = rng.sample(OBJECTS, 2)
        return f"say {a} and {b}", f"{a} {b}"
    if kind == "copy":
        words = " ".join(rng.sample(OBJECTS, rng.randint(2, 4)))
        return f"copy {words} again", words
    n = rng.randint(0, 90)
    return f"count up from {n}", f"{n + 1} {n + 2} {n + 3}"


def conversations(n: int = 300, seed: int = 0, task_share: float = 0.25) -> list[dict]:
    """`n` conversations: a `task_share` of them ask an IOI prompt (from the task's SFT split)
    and get its answer; the others have one or two turns of `_turn`."""
    rng = random.Random(seed)
    n_task = round(n * task_share)
    ioi = get_task("ioi").sft_examples(n_task, seed=seed)
    rows = [[("user", e.prompt), ("assistant", e.answer)] for e in ioi]
    for _ in range(n - n_task):
        turns = [_turn(rng) for _ in range(rng.choice([1, 2]))]
        rows.append([message for q, a in turns for message in (("user", q), ("assistant", a))])
    rng.shuffle(rows)
    return [{"messages": [{"role": r, "content": c} for r, c in row]} for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = conversations(args.n, args.seed)
    DATA.parent.mkdir(parents=True, exist_ok=True)
    DATA.write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(f"{len(rows)} conversations written to {DATA}")


if __name__ == "__main__":
    main()
