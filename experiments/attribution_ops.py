"""Where an attribution pass's kernel launches go: torch.profiler op counts on the CPU.

For each model (random bfloat16: GPT-2 small, and a 4-layer Llama with 8 heads, width 256) and
each of eap / eap-ig (m = 5) at node and edge level, on 4 pairs x 12 tokens, prints the number
of kernel-launching aten ops of one `attribute` call (leaf ops that are not views, allocations
or dtype queries), per layer, and those inside the scoring (`edge_matrix`, `node_scores`), with
the most frequent ones there; and the seconds of the graph bookkeeping an edge pass does (edge
names and labels of a fresh graph, as `attribute` builds one) on Llama-3-8B's graph.

    python experiments/attribution_ops.py
"""

from __future__ import annotations

import collections
import time

import torch
from torch.profiler import ProfilerActivity, profile, record_function
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedModel

import foresight.attribution.eap as eap
from foresight.attribution import attribute
from foresight.encoding import PairBatch
from foresight.graph import Graph

NO_LAUNCH = {
    "aten::" + name
    for name in (
        "as_strided", "resolve_conj", "resolve_neg", "view", "_unsafe_view", "_reshape_alias", "reshape",
        "expand", "transpose", "t", "permute", "unsqueeze", "squeeze", "slice", "select", "narrow",
        "detach", "alias", "unflatten", "flatten", "view_as", "split", "chunk", "unbind", "empty",
        "empty_strided", "empty_like", "lift_fresh", "is_nonzero", "item", "_local_scalar_dense",
        "result_type", "promote_types", "to", "_to_copy", "contiguous", "movedim", "numpy_T",
    )
}  # fmt: skip


def models() -> dict[str, tuple[PreTrainedModel, int, int]]:
    """(model, vocabulary, layers) by name, seed 0, bfloat16, eval mode."""
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=12, n_head=12, n_embd=768, n_positions=64))
    config = LlamaConfig(
        hidden_size=256, num_attention_heads=8, num_key_value_heads=4, intermediate_size=512,
        num_hidden_layers=4, vocab_size=1000, max_position_embeddings=64,
    )  # fmt: skip
    llama = LlamaForCausalLM(config)
    return {
        "gpt2-small": (gpt2.to(torch.bfloat16).eval(), 50257, 12),
        "llama-4l": (llama.to(torch.bfloat16).eval(), 1000, 4),
    }


def pairs(vocab: int, batch: int = 4, tokens: int = 12) -> PairBatch:
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(4, vocab, (batch, tokens), generator=g)
    corrupted = clean.clone()
    corrupted[:, [2, tokens // 2]] = torch.randint(4, vocab, (batch, 2), generator=g)
    answer, wrong = torch.randint(4, vocab, (2, batch), generator=g)
    return PairBatch(clean, corrupted, torch.full((batch,), tokens - 1), answer, wrong)


def labelled(function):
    """`function` inside a profiler range named SCORING."""

    def wrapper(*args, **kwargs):
        with record_function("SCORING"):
            return function(*args, **kwargs)

    return wrapper


def inside(event, label: str) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name == label:
            return True
        parent = parent.cpu_parent
    return False


def main() -> None:
    torch.set_num_threads(1)
    eap.edge_matrix, eap.node_scores = labelled(eap.edge_matrix), labelled(eap.node_scores)
    header = f"{'model':<11} {'method':<6} {'level':<5} {'kernel ops':>10} {'/layer':>7}"
    print(f"{header} {'scoring':>8} {'/layer':>7}")
    for name, (model, vocab, layers) in models().items():
        batch = pairs(vocab)
        for method in ("eap", "eap-ig"):
            for level in ("node", "edge"):
                attribute(model, batch, method=method, level=level, ig_steps=5)  # warm-up
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    attribute(model, batch, method=method, level=level, ig_steps=5)
                events = [e for e in prof.events() if e.name.startswith("aten::")]
                parents = {e.cpu_parent.id for e in events if e.cpu_parent is not None}
                launch = [e for e in events if e.id not in parents and e.name not in NO_LAUNCH]
                scoring = [e for e in launch if inside(e, "SCORING")]
                common = collections.Counter(e.name[6:] for e in scoring).most_common(4)
                print(
                    f"{name:<11} {method:<6} {level:<5} {len(launch):>10} {len(launch) / layers:>7.0f} "
                    f"{len(scoring):>8} {len(scoring) / layers:>7.1f}  {common}",
                    flush=True,
                )
    for attempt in ("first", "again"):
        start = time.perf_counter()
        graph = Graph(n_layers=32, n_heads=32)
        graph.edge_pairs(), graph.edge_labels()  # what an edge pass reads of the graph
        seconds = time.perf_counter() - start
        print(f"edge names and labels of Llama-3-8B's graph (34,881 edges), {attempt}: {seconds:.4f} s")


if __name__ == "__main__":
    main()
