"""Export of a stored checkpoint's scores and circuit to other tools' formats.

Format "eap-ig": the EAP-IG library's graph JSON (`foresight.attribution.eapig_format`), the
file MIB's circuit-localization track evaluates. The scores are the checkpoint's edge scores
when it has them (its node scores otherwise); the circuit is `foresight.circuits.circuit` of
those scores with k members (default: the tracker's `circuit_size`), edges or nodes alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import AutoConfig

from foresight.attribution.eapig_format import to_eapig
from foresight.circuits import circuit
from foresight.graph import Graph
from foresight.models import resolve_model_path
from trackers.store import TrajectoryError, checkpoint_file, load_checkpoint, read_manifest

FORMATS = ("eap-ig",)


def _d_model(manifest: dict[str, Any], d_model: int | None) -> int:
    """d_model given, else the hidden size of the trajectory's model config on disk."""
    if d_model is not None:
        return d_model
    model = manifest.get("model")
    try:
        config = AutoConfig.from_pretrained(resolve_model_path(model))
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"the trajectory's model {model!r} is not on disk ({e}): give --d-model") from None
    return int(config.hidden_size)


def export_checkpoint(
    trajectory: str | Path, step: int, fmt: str = "eap-ig", k: int | None = None, d_model: int | None = None
) -> dict[str, Any]:
    """Checkpoint `step` of `trajectory` as a `fmt` document (module docstring)."""
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: known formats are {', '.join(FORMATS)}")
    path = Path(trajectory)
    manifest = read_manifest(path)
    if not checkpoint_file(path, step).is_file():
        raise TrajectoryError(f"{path}: no checkpoint at step {step}")
    table = load_checkpoint(path, step)
    graph = Graph.from_dict(manifest["graph"])
    level = "edge" if (table.level == "edge").any() else "node"
    rows = table[table.level == level].set_index("component")["score"]
    scores = {str(name): float(value) for name, value in rows.items()}
    size = k if k is not None else int((manifest.get("tracker") or {}).get("circuit_size", 10))
    members = circuit(scores, size)
    width = _d_model(manifest, d_model)
    if level == "edge":
        nodes = table[table.level == "node"].set_index("component")["score"]
        node_scores = {str(n): float(v) for n, v in nodes.items()} if len(nodes) else None
        return to_eapig(graph, width, members, edge_scores=scores, node_scores=node_scores)
    return to_eapig(graph, width, members, node_scores=scores)


def export_to_file(
    trajectory: str | Path,
    step: int,
    out: str | Path,
    fmt: str = "eap-ig",
    k: int | None = None,
    d_model: int | None = None,
) -> Path:
    """`export_checkpoint` written to `out` (JSON); returns `out`."""
    document = export_checkpoint(trajectory, step, fmt, k, d_model)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document))
    return out
