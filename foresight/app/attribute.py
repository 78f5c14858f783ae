"""`foresight attribute`: the top components of a task circuit and its faithfulness curve."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from torch import nn

from foresight.attribution.api import attribute
from foresight.attribution.faithfulness import faithfulness_curve
from foresight.attribution.mib import mib_metrics
from foresight.attribution.scores import Scores
from foresight.circuits import ranked_candidates
from foresight.encoding import PairBatch, encode_pairs
from foresight.models import load_model

FAITHFULNESS = ("curve", "mib")


def curve_ks(n: int, top: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, ... below n, plus `top` and n."""
    ks = {top, n}
    base = 1
    while base < n:
        ks |= {k for k in (base, 2 * base, 5 * base) if k < n}
        base *= 10
    return sorted(k for k in ks if 1 <= k <= n)


def attribute_command(
    model: str,
    task: str,
    method: str,
    level: str,
    top: int,
    n_pairs: int,
    seed: int,
    dtype: str,
    device: str,
    faithfulness: str = "curve",
) -> None:
    """Attribute `task` on `model` (loaded in `dtype` on `device`), print the `top` components and
    the faithfulness of the top-k circuits for a range of k (`faithfulness` "curve"), or MIB's
    CPR and CMD with their curves ("mib")."""
    from foresight.tasks import get_task

    lm, tokenizer = load_model(model, dtype, device)
    batch = encode_pairs(tokenizer, get_task(task).attribution_pairs(n_pairs, seed=seed))
    scores = attribute(lm, batch, method=method, level=level)
    console = Console()
    console.print(
        f"[bold]{task}[/] on {model}: {method}, {level} level, {len(batch)} pairs; "
        f"{scores.metric} clean {scores.metric_value:.4f}, corrupted {scores.corrupted_value:.4f}"
    )
    frame = scores.to_frame().set_index("component")
    ranked = ranked_candidates(scores)
    table = Table("rank", "component", "kind", "layer", "head", "score", title=f"top {top} by |score|")
    for i, name in enumerate(ranked[:top], start=1):
        row = frame.loc[name]
        table.add_row(str(i), name, row["kind"], str(row["layer"]), str(row["head"]), f"{row['score']:+.5f}")
    console.print(table)
    if faithfulness == "mib":
        print_mib(console, lm, batch, scores)
        return
    curve = faithfulness_curve(lm, batch, scores, curve_ks(len(ranked), min(top, len(ranked))))
    table = Table("k", "faithfulness", title="faithfulness of the top-k circuit")
    for k, value in zip(curve.k, curve.faithfulness, strict=True):
        table.add_row(str(k), f"{value:.3f}")
    console.print(table)


def print_mib(console: Console, lm: nn.Module, batch: PairBatch, scores: Scores) -> None:
    """MIB's CPR and CMD of `scores` (top-k, and greedy for edges) with their curves."""
    selections = ("top-k", "greedy") if scores.level == "edge" else ("top-k",)
    for selection in selections:
        result = mib_metrics(lm, batch, scores, selection=selection)
        title = f"MIB, {selection}: CPR {result.cpr:.3f} (higher better), CMD {result.cmd:.3f} (lower better)"
        table = Table("budget", "members", "f (signed)", "f (|score|)", title=title)
        signed, magnitude = result.cpr_curve, result.cmd_curve
        for i in range(len(signed)):
            table.add_row(f"{signed.fraction[i]:.1%}", str(signed.n[i]),
                          f"{signed.faithfulness[i]:.3f}", f"{magnitude.faithfulness[i]:.3f}")  # fmt: skip
        console.print(table)
