"""`foresight export --format eap-ig`: a stored checkpoint in the EAP-IG library's graph JSON,
read back and compared with the stored scores."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import tiny_model

from foresight.app.cli import main
from foresight.attribution import attribute
from foresight.attribution.eapig_format import from_eapig, to_eapig
from foresight.circuits import circuit
from foresight.encoding import PairBatch
from foresight.graph import Graph
from trackers.store import TrajectoryWriter, load_checkpoint, scores_table


def eapig_edge_count(n_layers: int, n_heads: int, parallel: bool) -> int:
    """EAP-IG's edge count, from its construction: every earlier node feeds each head's q, k and
    v, each MLP and the logits; a layer's heads feed its MLP unless attention and MLP are parallel."""
    before = 1  # the input
    count = 0
    for _ in range(n_layers):
        count += before * 3 * n_heads
        count += before if parallel else before + n_heads
        before += n_heads + 1
    return count + before


@pytest.mark.parametrize("parallel", [False, True])
def test_edge_set_is_eapigs(parallel: bool) -> None:
    graph = Graph(12, 12, parallel=parallel)
    document = to_eapig(graph, 768, set(), edge_scores=dict.fromkeys(graph.edge_labels(), 0.0))
    assert len(document["edges"]) == eapig_edge_count(12, 12, parallel)
    if not parallel:
        assert len(document["edges"]) == 32491  # GPT-2 small's edge count in MIB
    assert len(document["nodes"]) == 1 + 12 * 13 + 1
    assert "input->a0.h0<q>" in document["edges"] and "a11.h11->logits" in document["edges"]


@pytest.fixture
def trajectory(tmp_path: Path) -> Path:
    """A one-checkpoint trajectory of real edge and node eap scores of a tiny GPT-2."""
    model = tiny_model("gpt2", seed=1, dtype=torch.float64, vocab=30)
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(3, 30, (4, 5), generator=g)
    corrupted = clean.clone()
    corrupted[:, 1] = torch.randint(3, 30, (4,), generator=g)
    batch = PairBatch(clean, corrupted, torch.full((4,), 4), clean[:, 0], clean[:, 2])
    edges = attribute(model, batch, level="edge").as_dict()
    nodes = attribute(model, batch, level="node").as_dict()
    graph = Graph(2, 4)
    manifest = {"run_id": "r", "graph": graph.to_dict(), "model": "nowhere", "task": "t", "seed": 0}
    writer = TrajectoryWriter(tmp_path / "traj", manifest | {"tracker": {"circuit_size": 7}})
    writer.write_checkpoint(3, scores_table(edges | nodes, graph.n_layers, "eap"), {"metric": 1.0})
    writer.write_checkpoint(5, scores_table(nodes, graph.n_layers, "eap"), {"metric": 1.0})  # nodes only
    return tmp_path / "traj"


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> Callable[..., tuple[int, str]]:
    """Runs `foresight ARGS` in this process: (exit code, stderr)."""

    def run(*args: str) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["foresight", *args])
        try:
            main()
            code = 0
        except SystemExit as done:
            code = done.code
        return code, capsys.readouterr().err

    return run


def test_export_round_trip(trajectory: Path, tmp_path: Path, run_cli) -> None:
    out = tmp_path / "graph.json"
    code, err = run_cli("export", "--trajectory", str(trajectory), "--step", "3", "--format", "eap-ig",
                   "--out", str(out), "--d-model", "16")  # fmt: skip
    assert code == 0, err
    document = json.loads(out.read_text())
    assert document["cfg"] == {"n_layers": 2, "n_heads": 4, "parallel_attn_mlp": False, "d_model": 16}
    stored = load_checkpoint(trajectory, 3)
    edges = stored[stored.level == "edge"].set_index("component")["score"]
    nodes = stored[stored.level == "node"].set_index("component")["score"]
    graph, scores, members = from_eapig(document, "edge")
    assert graph == Graph(2, 4)
    assert sorted(scores) == sorted(edges.index)
    np.testing.assert_allclose([scores[e] for e in edges.index], edges.to_numpy(), rtol=1e-12, atol=1e-15)
    assert members == circuit(edges.to_dict(), 7)  # the tracker's circuit size
    # an edge into a head's q input carries 1/12 of its block edge, with the sign of MIB (-score)
    exported = document["edges"]["input->a1.h2<k>"]["score"]
    assert exported == pytest.approx(-edges["embed->a1"] / 12)
    _, node_scores, _ = from_eapig(document, "node")
    np.testing.assert_allclose([node_scores[n] for n in Graph(2, 4).senders()],
                               nodes[Graph(2, 4).senders()].to_numpy(), rtol=1e-12)  # fmt: skip


def test_export_of_a_node_level_checkpoint(trajectory: Path, tmp_path: Path, run_cli) -> None:
    out = tmp_path / "nodes.json"
    code, err = run_cli("export", "--trajectory", str(trajectory), "--step", "5", "--out", str(out),
                        "--d-model", "16", "--k", "3")  # fmt: skip
    assert code == 0, err
    document = json.loads(out.read_text())
    stored = load_checkpoint(trajectory, 5).set_index("component")["score"]
    _, scores, members = from_eapig(document, "node")
    np.testing.assert_allclose([scores[n] for n in scores], stored[list(scores)].to_numpy(), rtol=1e-12)
    assert members == circuit(stored.to_dict(), 3)
    # an edge is in the graph when both its ends are (input and logits always)
    head = sorted(members)[0]
    assert document["edges"][f"{head}->logits"]["in_graph"]
    assert all(e["score"] == 0.0 for e in document["edges"].values())


def test_export_rejects_bad_input(trajectory: Path, tmp_path: Path, run_cli) -> None:
    out = tmp_path / "never.json"
    for args, needle in [
        (["--step", "4"], "no checkpoint at step 4"),
        (["--step", "3", "--k", "0"], "k = 0"),
        (["--step", "3", "--format", "pt"], "--format 'pt'"),
        (["--step", "3"], "not on disk"),  # no --d-model and model 'nowhere'
    ]:
        code, err = run_cli("export", "--trajectory", str(trajectory), "--out", str(out), *args)
        assert code == 2 and needle in err and err.startswith("error:"), err
        assert not out.exists()
