"""Disk footprint and load time of a trajectory of a GPT-2-small-sized model.

The graph is that of GPT-2 small (12 layers x 12 heads, built on the meta device, so
nothing is downloaded or allocated): every node and edge gets a random score at each of
`--checkpoints` checkpoints (nodes also a gradient norm, and every checkpoint the
scalars the tracker stores), written with `trackers.store.TrajectoryWriter` and
`scores_table` as `foresight track` writes them. Prints the size on disk (target
< 100 MB) and the wall time of `load_trajectory` (target < 2 s; best and median of
`--repeats`, page cache warm after the write).

    python experiments/bench_disk.py [--checkpoints 100] [--repeats 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from foresight.architectures import graph_of
from foresight.graph import Graph
from trackers.store import TrajectoryWriter, load_trajectory, scores_table

MB = 1_000_000
TARGET_MB, TARGET_S = 100, 2.0


def gpt2_small_graph() -> Graph:
    """The attribution graph of a GPT-2-small-sized model (the config of bench_attribution.py)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=12, n_head=12, n_embd=768, n_positions=128, attn_implementation="eager")
    with torch.device("meta"):
        return graph_of(GPT2LMHeadModel(config))


def write(path: Path, graph: Graph, checkpoints: int, every: int, seed: int) -> float:
    """Write the trajectory; returns the seconds it took."""
    nodes, edges = graph.node_names(), graph.edge_labels()
    names = nodes + edges
    manifest = {
        "run_id": "bench-disk", "graph": graph.to_dict(), "model": "gpt2-small-size (random)",
        "task": "bench", "seed": seed, "strategy": "free", "config": {"every": every},
    }  # fmt: skip
    writer = TrajectoryWriter(path, manifest)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for c in range(checkpoints):
        scores = dict(zip(names, rng.normal(0.0, 1.0, len(names)).tolist(), strict=True))
        grad_norms = dict(zip(nodes, rng.lognormal(0.0, 1.0, len(nodes)).tolist(), strict=True))
        table = scores_table(scores, graph.n_layers, "eap", grad_norms)
        scalars = {
            "accuracy": float(rng.uniform()), "metric": float(rng.normal()),
            "faithfulness": float(rng.uniform()), "faithfulness_start_circuit": float(rng.uniform()),
            "wall_s": float(rng.uniform()),
        }  # fmt: skip
        writer.write_checkpoint(c * every, table, scalars)
    return time.perf_counter() - start


def disk_usage(path: Path) -> tuple[int, int]:
    """(sum of file sizes, bytes of allocated blocks) of every file under `path`."""
    files = [f for f in path.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files), sum(f.stat().st_blocks * 512 for f in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", type=int, default=100)
    parser.add_argument("--every", type=int, default=10, help="steps between checkpoints")
    parser.add_argument("--repeats", type=int, default=5, help="timed load_trajectory calls")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="write the trajectory here and keep it")
    args = parser.parse_args()
    torch.set_num_threads(1)

    graph = gpt2_small_graph()
    n_nodes, n_edges = len(graph.node_names()), len(graph.edge_labels())
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "trajectory"
        write_s = write(path, graph, args.checkpoints, args.every, args.seed)
        size, allocated = disk_usage(path)
        times, table = [], None
        for _ in range(args.repeats):
            start = time.perf_counter()
            table = load_trajectory(path)
            times.append(time.perf_counter() - start)
    assert table is not None and len(table) == args.checkpoints * (n_nodes + n_edges)

    best, median = min(times), statistics.median(times)
    print(f"graph: GPT-2 small size, {graph.n_layers} layers x {graph.n_heads} heads")
    print(f"       {n_nodes} nodes + {n_edges} edges = {n_nodes + n_edges} rows per checkpoint")
    print(f"trajectory: {args.checkpoints} checkpoints, {len(table):,} rows, {table.shape[1]} columns")
    print(f"write:  {write_s:.2f} s ({write_s / args.checkpoints * 1000:.1f} ms per checkpoint)")
    print(
        f"disk:   {size / MB:.2f} MB in files ({allocated / MB:.2f} MB allocated), "
        f"{size / args.checkpoints / 1000:.1f} kB per checkpoint; target < {TARGET_MB} MB: "
        f"{'met' if allocated < TARGET_MB * MB else 'NOT met'}"
    )
    print(
        f"load_trajectory: best {best:.3f} s, median {median:.3f} s of {args.repeats}; "
        f"target < {TARGET_S} s: {'met' if median < TARGET_S else 'NOT met'}"
    )
    memory = table.memory_usage(deep=True).sum() / MB
    print(f"in memory: {memory:.1f} MB as a DataFrame; torch threads: {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
