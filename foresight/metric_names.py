"""The metric vocabulary: every measure a Foresight run logs, under one key (what the code
computes), one MLflow name (what the UI, `report` and the studies read) and one meaning (what
the run descriptions and figures say).

Per-task measures (`PER_TASK`) are computed as `{task}/{key}` and logged as
`{task}/{name}`: the task is the UI's section. Circuit Conflict between tasks a and b, computed
as `cc/{a}/{b}`, is logged in both sections (`a/circuit_conflict/with_b`). Run-level measures
(`LOSS`, `FINAL`) keep their names. The tracker (`trackers`) and `foresight finetune` log
through `mlflow_names`; `foresight.mlflow_ui` describes runs from here and `foresight.figures`
labels its lines from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple


class Measure(NamedTuple):
    """A measure's MLflow `name`, what it means to a reader, and the commands whose runs log it."""

    name: str
    meaning: str
    logged_by: tuple[str, ...] = ("track",)


# per-task key -> its measure
PER_TASK: dict[str, Measure] = {
    "accuracy": Measure("accuracy", "held-out top-1 accuracy", ("track", "finetune")),
    "metric": Measure(
        "logit_difference",
        "mean logit difference, right minus wrong answer, on the attribution pairs",
    ),
    "faithfulness": Measure(
        "faithfulness", "faithfulness of the current circuit (1 = explains the whole model)"
    ),
    "cd_start_all": Measure(
        "circuit_distance/to_start/all", "1 - Jaccard of the circuit and the step-0 circuit"
    ),
    "cd_start_head": Measure(
        "circuit_distance/to_start/heads", "circuit distance to step 0, attention heads only"
    ),
    "cd_start_mlp": Measure("circuit_distance/to_start/mlps", "circuit distance to step 0, MLPs only"),
    "cd_prev_all": Measure(
        "circuit_distance/to_previous/all",
        "1 - Jaccard of the circuit and the previous checkpoint's",
    ),
    "cd_prev_head": Measure(
        "circuit_distance/to_previous/heads",
        "circuit distance to the previous checkpoint, heads",
    ),
    "cd_prev_mlp": Measure(
        "circuit_distance/to_previous/mlps", "circuit distance to the previous checkpoint, MLPs"
    ),
    "cs_start": Measure(
        "circuit_stability/to_start",
        "faithfulness of the step-0 circuit over the current one's (1 = as good; above 1 = better)",
    ),
    "cs_prev": Measure("circuit_stability/to_previous", "the same for the previous checkpoint's circuit"),
    **{
        f"migrated_{kind}": Measure(
            f"circuit_distance/to_start/{label}_above_noise_floor",
            f"1 where CD to step 0 ({label}) is above the 95th percentile of its noise floor, else 0",
        )
        for kind, label in (("all", "all"), ("head", "heads"), ("mlp", "mlps"))
    },
    **{
        f"cd_floor_p95_{kind}": Measure(
            f"noise_floor/circuit_distance_p95/{label}",
            f"95th percentile of CD ({label}) between circuits of bootstrap resamples of the pairs at step 0",
        )
        for kind, label in (("all", "all"), ("head", "heads"), ("mlp", "mlps"))
    },
    "cs_floor_p05": Measure(
        "noise_floor/circuit_stability_p05",
        "5th percentile of CS of bootstrap-resampled circuits against the circuit of all pairs, step 0",
    ),
    "cs_start_spearman": Measure(
        "score_stability/to_start",
        "Spearman correlation of the node scores with step 0's",
    ),
    **{
        f"mib_{term}_{level}_{selection}": Measure(
            f"mib/{term}/{level}/{selection}", f"{meaning}; {level} circuits chosen {selection} (track --mib)"
        )
        for term, meaning in (
            ("cpr", "MIB's CPR: area under faithfulness over MIB's circuit sizes (higher is better)"),
            ("cmd", "MIB's CMD: area under |1 - faithfulness| over MIB's circuit sizes (lower is better)"),
        )
        for level, selection in (("node", "top-k"), ("edge", "top-k"), ("edge", "greedy"))
    },
    "cd_selected": Measure(
        "circuit_distance/to_updated",
        "1 - Jaccard of the components being fine-tuned and the current circuit",
        ("finetune",),
    ),
}

LOSS = Measure("train/loss", "training loss (cross-entropy of the answer token)", ("track", "finetune"))
# logged once per run of `foresight finetune` (step 0, so that the UI charts them as bars)
FINAL: dict[str, Measure] = {
    "accuracy_before": Measure("accuracy_before", "held-out accuracy before fine-tuning", ("finetune",)),
    "accuracy_after": Measure("accuracy_after", "held-out accuracy after fine-tuning", ("finetune",)),
    "wall_s": Measure("wall_s", "wall time of the run in seconds", ("finetune",)),
}
CONFLICT = Measure(
    "circuit_conflict/with_",
    "share of the shared circuit components whose task gradients point opposite ways",
)


def mlflow_name(task: str, key: str) -> str:
    """The MLflow name of the per-task `key` (a PER_TASK key) of `task`."""
    return f"{task}/{PER_TASK[key].name}"


def mlflow_names(metrics: Mapping[str, float]) -> dict[str, float]:
    """Computed metrics under their MLflow names: `{task}/{key}` becomes `mlflow_name(task, key)`,
    `cc/a/b` becomes `a/circuit_conflict/with_b` and `b/circuit_conflict/with_a`, `loss` becomes
    `train/loss`; other keys (FINAL, comparison summaries) pass unchanged."""
    renamed: dict[str, float] = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if key == "loss":
            renamed[LOSS.name] = value
        elif parts[0] == "cc" and len(parts) == 3:
            renamed[f"{parts[1]}/{CONFLICT.name}{parts[2]}"] = value
            renamed[f"{parts[2]}/{CONFLICT.name}{parts[1]}"] = value
        elif len(parts) == 2 and parts[1] in PER_TASK:
            renamed[mlflow_name(parts[0], parts[1])] = value
        else:
            renamed[key] = value
    return renamed


def legend_label(key: str) -> str:
    """A short line label for a per-task key within its figure (Circuit Distance, Stability,
    Conflict): its MLflow name without the figure's own first segment, as words
    (`cd_start_head` -> "to start, heads"); a conflict column `cc_{other}` -> "with {other}"; a
    key outside the vocabulary -> its words after the family prefix."""
    if key.startswith("cc_"):
        return f"with {key[3:]}"
    if key not in PER_TASK:
        return key.partition("_")[2].replace("_", " ")
    first, _, rest = PER_TASK[key].name.partition("/")
    words = rest if first in ("circuit_distance", "circuit_stability") else PER_TASK[key].name
    return words.replace("/", ", ").replace("_", " ")
