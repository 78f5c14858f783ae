"""Attribution scores against independent computations on tiny random models.

The references here use their own hooks (a scalar multiplier alpha on the
activation change, differentiated with autograd; module swapping for exact
patching) and read the output projections' weights directly, so they share
no code with foresight.attribution beyond the PairBatch container.
"""

from __future__ import annotations

import copy
import gc
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch
from accelerate import dispatch_model
from peft import LoraConfig, get_peft_model
from scipy.stats import spearmanr
from tiny_models import tiny_model
from torch import nn

from foresight.architectures import graph_of
from foresight.attribution import attribute
from foresight.attribution.runner import Runner
from foresight.encoding import PairBatch
from foresight.graph import Graph
from foresight.next_token import next_token_logits

V, B, T, HEADS, LAYERS = 40, 5, 7, 4, 2


def family_of(family: str) -> str:
    """The tiny_models family of a test family name."""
    return "gpt_neox" if family.startswith("neox") else family


def build(family: str, dtype: torch.dtype = torch.float64, seed: int = 0) -> nn.Module:
    """A tiny model of `family` ("neox": parallel residual, "neox-sequential": not), weights x 3
    so that effects are not tiny."""
    name, extra = family, {}
    if family.startswith("neox"):
        name, extra = "gpt_neox", {"use_parallel_residual": family == "neox"}
    return tiny_model(name, seed=seed, scale=3.0, dtype=dtype, vocab=V, layers=LAYERS, heads=HEADS, **extra)


def make_batch(seed: int = 1) -> PairBatch:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([T, T - 2, T, T - 1, T - 3])
    clean = torch.randint(3, V, (B, T), generator=g)
    corrupted = clean.clone()
    corrupted[:, 1] = torch.randint(3, V, (B,), generator=g)
    corrupted[:, 3] = torch.randint(3, V, (B,), generator=g)
    pad = torch.arange(T)[None] >= lengths[:, None]
    clean[pad], corrupted[pad] = 0, 0
    answer, wrong = torch.randint(3, V, (B,), generator=g), torch.randint(3, V, (B,), generator=g)
    return PairBatch(clean, corrupted, lengths - 1, answer, wrong)


# The test's own map of each family: (layers, embed, final norm) from the model, the others from
# one layer: o-projection, MLP write, attention read, MLP read, post-norm of the attention output.
LLAMA_LIKE = ("model.layers", "model.embed_tokens", "model.norm", "self_attn.o_proj", "mlp",
              "input_layernorm", "post_attention_layernorm", None)  # fmt: skip
LAYOUT = {
    "llama": LLAMA_LIKE, "mistral": LLAMA_LIKE, "qwen2": LLAMA_LIKE, "qwen3": LLAMA_LIKE, "phi3": LLAMA_LIKE,
    "gemma2": ("model.layers", "model.embed_tokens", "model.norm", "self_attn.o_proj",
               "post_feedforward_layernorm", "input_layernorm", "pre_feedforward_layernorm",
               "post_attention_layernorm"),
    "olmo2": ("model.layers", "model.embed_tokens", "model.norm", "self_attn.o_proj",
              "post_feedforward_layernorm", "self_attn", "mlp", "post_attention_layernorm"),
    "gpt2": ("transformer.h", "transformer.drop", "transformer.ln_f", "attn.c_proj", "mlp", "ln_1", "ln_2",
             None),
    "gpt_neox": ("gpt_neox.layers", "gpt_neox.emb_dropout", "gpt_neox.final_layer_norm", "attention.dense",
                 "mlp", "input_layernorm", "post_attention_layernorm", None),
}  # fmt: skip
LAYOUT["gemma3"] = LAYOUT["gemma2"]


class Parts:
    """The test's own map of a model: modules by role and output-projection weights."""

    def __init__(self, model: nn.Module, family: str):
        layers_path, embed, final, o, mlp, attn_read, mlp_read, post = LAYOUT[family]
        layers = model.get_submodule(layers_path)
        self.embed = model.get_submodule(embed)
        self.o = [layer.get_submodule(o) for layer in layers]
        self.mlp = [layer.get_submodule(mlp) for layer in layers]
        self.norms = [layer.get_submodule(p) for layer in layers for p in (attn_read, mlp_read)]
        self.norms.append(model.get_submodule(final))
        self.post = [None if post is None else layer.get_submodule(post) for layer in layers]
        # Conv1D (GPT-2): y = x W; nn.Linear: y = x W^T, so head h's rows of W^T are W[:, slice]^T
        self.w = [m.weight if family == "gpt2" else m.weight.T for m in self.o]
        self.model = model
        self.dh = self.w[0].shape[0] // HEADS


def metric(logits: torch.Tensor, batch: PairBatch) -> torch.Tensor:
    last = logits[torch.arange(len(batch)), batch.last]
    return (last.gather(1, batch.answer[:, None]) - last.gather(1, batch.wrong[:, None])).mean()


def capture(parts: Parts, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Activations by node name, recorded with the test's own hooks."""
    acts: dict[str, torch.Tensor] = {}
    handles = [parts.embed.register_forward_hook(lambda m, a, o: acts.__setitem__("embed", o.detach()))]
    for layer in range(LAYERS):
        handles.append(parts.o[layer].register_forward_pre_hook(
            lambda m, a, L=layer: acts.__setitem__(f"z{L}", a[0].detach())))  # fmt: skip
        handles.append(parts.o[layer].register_forward_hook(
            lambda m, a, o, L=layer: acts.__setitem__(f"p{L}", o.detach())))  # fmt: skip
        handles.append(parts.mlp[layer].register_forward_hook(
            lambda m, a, o, L=layer: acts.__setitem__(f"m{L}", o.detach())))  # fmt: skip
    with torch.no_grad():
        acts["logits"] = parts.model(input_ids=ids).logits
    for h in handles:
        h.remove()
    return acts


def change(parts: Parts, clean: dict, corr: dict, node: str) -> tuple[nn.Module, str, torch.Tensor]:
    """(module, "in"/"out", activation change masked to the node) for a sender node."""
    if node == "embed":
        return parts.embed, "out", corr["embed"] - clean["embed"]
    if ".h" in node:
        layer, head = (int(x) for x in node[1:].split(".h"))
        delta = torch.zeros_like(clean[f"z{layer}"])
        cols = slice(head * parts.dh, (head + 1) * parts.dh)
        delta[..., cols] = corr[f"z{layer}"][..., cols] - clean[f"z{layer}"][..., cols]
        return parts.o[layer], "in", delta
    layer = int(node[1:])
    return parts.mlp[layer], "out", corr[node] - clean[node]


Delta = torch.Tensor | Callable[[torch.Tensor], torch.Tensor]


def write_change(parts: Parts, clean: dict, corr: dict, sender: str) -> Delta:
    """Change of the sender's residual write [B, T, d], from the raw weights: a tensor D (the
    write moves by alpha * D), or, behind a post-norm N of the attention output, the function
    alpha -> N(p + alpha * D) - N(p) (p: the clean o-projection output)."""
    if ".h" not in sender:
        return change(parts, clean, corr, sender)[2]
    layer, head = (int(x) for x in sender[1:].split(".h"))
    rows = slice(head * parts.dh, (head + 1) * parts.dh)
    linear = (corr[f"z{layer}"][..., rows] - clean[f"z{layer}"][..., rows]) @ parts.w[layer][rows]
    post, p = parts.post[layer], clean[f"p{layer}"]
    return linear if post is None else lambda alpha: post(p + alpha * linear) - post(p)


def add_alpha(module: nn.Module, where: str, delta: Delta, alpha: torch.Tensor):
    """Adds delta(alpha) (or alpha * delta) to the module's input (positional or the
    hidden_states keyword) or to its output."""
    shift = (lambda: delta(alpha)) if callable(delta) else (lambda: alpha * delta)
    if where == "in":

        def pre(m: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            if args:
                return (args[0] + shift(), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": kwargs["hidden_states"] + shift()}

        return module.register_forward_pre_hook(pre, with_kwargs=True)
    return module.register_forward_hook(lambda m, a, o: o + shift())


def alpha_effect(parts: Parts, batch: PairBatch, module: nn.Module, where: str, delta: Delta,
                 alpha: float | None) -> float:  # fmt: skip
    """alpha None: d/da metric(activation + a * delta) at a = 0; else metric(alpha) - metric(0)."""
    a = torch.tensor(0.0 if alpha is None else alpha, dtype=torch.float64, requires_grad=alpha is None)
    handle = add_alpha(module, where, delta, a)
    try:
        with torch.enable_grad():
            value = metric(parts.model(input_ids=batch.clean).logits, batch)
    finally:
        handle.remove()
    if alpha is None:
        return float(torch.autograd.grad(value, a)[0])
    with torch.no_grad():
        return float(value - metric(parts.model(input_ids=batch.clean).logits, batch))


def node_reference(parts: Parts, batch: PairBatch, graph: Graph, alpha: float | None) -> np.ndarray:
    clean, corr = capture(parts, batch.clean), capture(parts, batch.corrupted)
    out = [alpha_effect(parts, batch, *change(parts, clean, corr, n), alpha) for n in graph.senders()]
    return np.array(out + [float(metric(corr["logits"], batch) - metric(clean["logits"], batch))])


def edge_reference(parts: Parts, batch: PairBatch, graph: Graph, alpha: float | None) -> np.ndarray:
    clean, corr = capture(parts, batch.clean), capture(parts, batch.corrupted)
    receivers = {r: parts.norms[j] for j, r in enumerate(graph.receivers())}
    return np.array([
        alpha_effect(parts, batch, receivers[r], "in", write_change(parts, clean, corr, s), alpha)
        for s, r in graph.edge_pairs()
    ])  # fmt: skip


LAYER_NORM = ("gpt2", "neox", "neox-sequential")  # the families whose norms compute in float64
FAMILIES = ["llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "olmo2", "gpt2", "neox", "neox-sequential"]


def close(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-4) -> None:
    assert np.abs(expected).max() > 1e-6, "degenerate reference"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and the machine is shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def batch() -> PairBatch:
    return make_batch()


@pytest.mark.parametrize("family", FAMILIES)
def test_eap_is_the_first_order_term_of_patching(family: str, batch: PairBatch) -> None:
    model = build(family)
    parts, graph = Parts(model, family_of(family)), graph_of(model)
    node = attribute(model, batch, method="eap", level="node", batch_size=2)
    close(node.values, node_reference(parts, batch, graph, None))
    edge = attribute(model, batch, method="eap", level="edge", batch_size=3)
    assert edge.names == graph.edge_labels()
    close(edge.values, edge_reference(parts, batch, graph, None))


@pytest.mark.parametrize("family", FAMILIES)
def test_node_score_is_the_sum_of_its_edge_scores(family: str, batch: PairBatch) -> None:
    """For eap and eap-ig: node(s) = sum over receivers r of edge(s->r), for every sender
    (exact; RMSNorms compute in float32, hence their looser tolerance)."""
    model = build(family)
    graph = graph_of(model)
    for method in ("eap", "eap-ig"):
        node = attribute(model, batch, method=method, level="node", ig_steps=3).as_dict()
        edge = attribute(model, batch, method=method, level="edge", ig_steps=3).as_dict()
        sums = [
            sum(edge[f"{s}->{r}"] for r in graph.receivers() if graph.has_edge(s, r)) for s in graph.senders()
        ]
        close(
            np.array(sums),
            np.array([node[s] for s in graph.senders()]),
            rtol=1e-9 if family in LAYER_NORM else 1e-5,
        )


@pytest.mark.parametrize("family", FAMILIES)
def test_exact_patching_matches_references(family: str, batch: PairBatch) -> None:
    model = build(family)
    parts, graph = Parts(model, family_of(family)), graph_of(model)
    rtol = 1e-8 if family in LAYER_NORM else 1e-4  # RMSNorms round to float32
    node = attribute(model, batch, method="patching", level="node", batch_size=3)
    close(node.values, swap_reference(parts, batch, graph), rtol)
    close(node.values, node_reference(parts, batch, graph, 1.0), rtol)
    edge = attribute(model, batch, method="patching", level="edge", batch_size=3)
    close(edge.values, edge_reference(parts, batch, graph, 1.0), rtol)


class Patched(nn.Module):
    """Wraps a module; replaces head columns of its input, or its whole output."""

    def __init__(self, inner: nn.Module, value: torch.Tensor, cols: slice | None):
        super().__init__()
        self.inner, self.value, self.cols = inner, value, cols

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if self.cols is None:
            return self.value
        x = torch.cat([x[..., : self.cols.start], self.value[..., self.cols], x[..., self.cols.stop :]], -1)
        return self.inner(x, *args, **kwargs)


def swap_reference(parts: Parts, batch: PairBatch, graph: Graph) -> np.ndarray:
    """Node patching by swapping modules for `Patched` wrappers (no hooks)."""
    corr = capture(parts, batch.corrupted)
    with torch.no_grad():
        base = metric(parts.model(input_ids=batch.clean).logits, batch)
    out = []
    for node in graph.senders():
        if node == "embed":
            where, value, cols = parts.embed, corr["embed"], None
        elif ".h" in node:
            layer, head = (int(x) for x in node[1:].split(".h"))
            where, value, cols = (
                parts.o[layer],
                corr[f"z{layer}"],
                slice(head * parts.dh, (head + 1) * parts.dh),
            )
        else:
            where, value, cols = parts.mlp[int(node[1:])], corr[node], None
        name = next(n for n, m in parts.model.named_modules() if m is where)
        parent, _, attr = name.rpartition(".")
        setattr(parts.model.get_submodule(parent), attr, Patched(where, value, cols))
        try:
            with torch.no_grad():
                out.append(float(metric(parts.model(input_ids=batch.clean).logits, batch) - base))
        finally:
            setattr(parts.model.get_submodule(parent), attr, where)
    return np.array(out + [float(metric(corr["logits"], batch) - base)])


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_ig_completeness_on_the_embedding(family: str, batch: PairBatch) -> None:
    """score_ig(embed) -> M(corrupted) - M(clean) as m grows (midpoint rule, error O(1/m^2))."""
    model = build(family)
    parts = Parts(model, family)
    clean, corr = capture(parts, batch.clean), capture(parts, batch.corrupted)
    gap = float(metric(corr["logits"], batch) - metric(clean["logits"], batch))
    errors = []
    for m in (2, 8, 32):
        scores = attribute(model, batch, method="eap-ig", level="node", ig_steps=m)
        assert scores.corrupted_value - scores.metric_value == pytest.approx(gap, rel=1e-9)
        errors.append(abs(scores.as_dict()["embed"] - gap))
    assert errors[1] < errors[0] / 8 and errors[2] < errors[1] / 8  # 4x the steps: 1/16 of the error


def model_state(model: nn.Module) -> dict:
    return {
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grad": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "grad_ids": [id(p.grad) for p in model.parameters()],
        "hooks": [
            (dict(m._forward_hooks), dict(m._forward_pre_hooks), dict(m._backward_hooks))
            for m in model.modules()
        ],
    }


def assert_same_state(before: dict, after: dict) -> None:
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    assert before["grad_ids"] == after["grad_ids"]
    for a, b in zip(before["grad"], after["grad"], strict=True):
        assert (a is None and b is None) or torch.equal(a, b)
    assert before["hooks"] == after["hooks"]


def test_model_is_left_as_found_also_after_an_exception(batch: PairBatch) -> None:
    model = build("llama", torch.float32)
    model.train()
    model.model.layers[1].eval()
    params = list(model.parameters())
    params[0].requires_grad_(False)
    params[3].grad = torch.randn_like(params[3])
    model.model.layers[0].register_forward_hook(lambda m, a, o: None)
    before = model_state(model)
    for method, level in [("eap", "node"), ("eap", "edge"), ("eap-ig", "edge"), ("patching", "node")]:
        attribute(model, batch, method=method, level=level, ig_steps=2)
        assert_same_state(before, model_state(model))
    broken = PairBatch(batch.clean, batch.corrupted.clone(), batch.last, batch.answer, batch.wrong)
    broken.corrupted[0, 0] = V + 5  # out of the vocabulary: the embedding raises inside the forward
    for method in ("eap", "patching"):
        with pytest.raises(IndexError):
            attribute(model, broken, method=method, level="edge")
        assert_same_state(before, model_state(model))


def test_peft_lora_model(batch: PairBatch) -> None:
    """A LoRA-wrapped Llama scores as its merged equivalent, and is left as found."""
    model = build("llama")
    config = LoraConfig(r=2, target_modules=["q_proj", "o_proj", "down_proj"], init_lora_weights=False)
    wrapped = get_peft_model(model, config)
    merged = copy.deepcopy(wrapped).merge_and_unload()
    before = model_state(wrapped)
    for level in ("node", "edge"):
        lora = attribute(wrapped, batch, method="eap", level=level)
        plain = attribute(merged, batch, method="eap", level=level)
        assert lora.names == plain.names
        close(lora.values, plain.values, rtol=1e-6)
    assert_same_state(before, model_state(wrapped))


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_bfloat16_scores_are_float32_and_near_the_float32_scores(family: str, batch: PairBatch) -> None:
    """The same weights in bfloat16 and in float32: node and edge eap scores come out
    float32, within relative error ||s_bf16 - s_fp32|| / ||s_fp32|| <= 0.05 and with a
    Spearman correlation >= 0.98 (measured on three seeds: <= 0.018 and >= 0.993; the
    bfloat16 forward's rounding alone accounts for that). Dropping or misplacing one
    layer's scores, a wrong sign or a stale weight exceeds both bounds."""
    model = build(family, torch.float32)
    low = copy.deepcopy(model).to(torch.bfloat16)
    for level in ("node", "edge"):
        reference = attribute(model, batch, method="eap", level=level).values
        scores = attribute(low, batch, method="eap", level=level).values
        assert reference.dtype == np.float32 and scores.dtype == np.float32
        assert np.linalg.norm(scores - reference) / np.linalg.norm(reference) <= 0.05
        assert spearmanr(scores, reference)[0] >= 0.98


def test_a_model_dispatched_by_accelerate(batch: PairBatch) -> None:
    """A Llama dispatched module by module through accelerate's hooks (every module on
    the CPU, the only device here, with the hooks forced on) scores as the plain model
    does, for eap node and edge scores and exact edge patching; its hooks stay on."""
    model = build("llama", torch.float32)
    plain = copy.deepcopy(model)
    names = ["model.embed_tokens", "model.norm", "model.rotary_emb", "lm_head"]
    device_map = {name: "cpu" for name in [*names, *(f"model.layers.{i}" for i in range(LAYERS))]}
    dispatched = dispatch_model(model, device_map=device_map, force_hooks=True)
    assert hasattr(dispatched.model.layers[0], "_hf_hook")
    for method, level in [("eap", "node"), ("eap", "edge"), ("patching", "edge")]:
        expected = attribute(plain, batch, method=method, level=level).values
        close(attribute(dispatched, batch, method=method, level=level).values, expected, rtol=1e-5)
    assert hasattr(dispatched.model.layers[0], "_hf_hook")


def live_tensor_bytes(exclude: set[int]) -> int:
    """Bytes of the storages of all live tensors (each once), storages in `exclude` left out."""
    storages = {}
    with warnings.catch_warnings():  # isinstance on some module proxies warns of deprecations
        tensors = [obj for obj in gc.get_objects() if warnings.simplefilter("ignore") or torch.is_tensor(obj)]
    for obj in tensors:
        if obj.device.type != "meta":
            storage = obj.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return sum(n for ptr, n in storages.items() if ptr not in exclude)


@pytest.mark.parametrize(("method", "level"), [("eap", "node"), ("eap", "edge"), ("eap-ig", "edge")])
def test_memory_is_that_of_one_chunk(method: str, level: str, batch: PairBatch, monkeypatch) -> None:
    """The live tensors (weights excluded), sampled after every forward, peak at the same
    size whether the pairs come as two chunks of one pair or as five: nothing of a chunk
    outlives it (keeping each chunk's runs makes it over 1.5x). From the second chunk on,
    the output projections' [H, dh, d] are cached, so a single chunk would peak lower."""
    model = build("llama", torch.float32)
    weights = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    peaks, forward = [], Runner.forward

    def sampled(self: Runner, *args, **kwargs):
        acts = forward(self, *args, **kwargs)
        peaks[-1] = max(peaks[-1], live_tensor_bytes(weights))
        return acts

    monkeypatch.setattr(Runner, "forward", sampled)
    for pairs in (batch.slice(0, 2), batch):
        peaks.append(0)
        attribute(model, pairs, method=method, level=level, ig_steps=3, batch_size=1)
    two, five = peaks
    assert 0 < five <= 1.05 * two


def test_metrics_and_frame(batch: PairBatch) -> None:
    model = build("gpt2")
    frame = attribute(model, batch, method="eap", level="node").to_frame()
    assert list(frame.columns) == ["component", "kind", "layer", "head", "score"]
    row = frame.set_index("component").loc["a1.h3"]
    assert (row["kind"], row["layer"], row["head"]) == ("head", 1, 3)
    assert frame.set_index("component").loc["logits"].layer == LAYERS
    prob = attribute(model, batch, method="patching", level="node", metric="prob_diff")
    assert prob.values[-1] == pytest.approx(prob.corrupted_value - prob.metric_value)
    kl = attribute(model, batch, method="patching", level="node", metric="kl")
    assert kl.metric_value == pytest.approx(0.0, abs=1e-12) and kl.corrupted_value > 0
    assert np.allclose(attribute(model, batch, method="eap", metric="kl").values, 0.0, atol=1e-10)
    with pytest.raises(ValueError, match="unknown metric"):
        attribute(model, batch, metric="accuracy")
    with pytest.raises(ValueError, match="unknown method"):
        attribute(model, batch, method="acdc")


@pytest.mark.parametrize("family", FAMILIES)
def test_runner_logits_are_each_rows_last_position(family: str, batch: PairBatch) -> None:
    """The runner's logits [B, V] are the full forward's logits at each row's own last position
    (the rows' last positions differ), on every installed transformers release."""
    model = build(family)
    acts = Runner(model).forward(batch.clean, batch.last)
    with torch.no_grad():
        full = model(input_ids=batch.clean).logits
    assert batch.last.unique().numel() > 1
    assert acts.logits.shape == (B, V)
    torch.testing.assert_close(acts.logits, full[torch.arange(B), batch.last], rtol=1e-10, atol=1e-10)


def test_next_token_logits_through_a_peft_model_leave_no_hook(batch: PairBatch) -> None:
    """Through PEFT's wrapper too, `next_token_logits` [B, V] is the full forward at each row's
    last position, and afterwards the model computes every position's logits again."""
    config = LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False)
    wrapped = get_peft_model(build("llama"), config)
    with torch.no_grad():
        full = wrapped(input_ids=batch.clean).logits
        last = next_token_logits(wrapped, batch.clean, batch.last)
        after = wrapped(input_ids=batch.clean).logits
    torch.testing.assert_close(last, full[torch.arange(B), batch.last], rtol=1e-10, atol=1e-10)
    assert after.shape == (B, T, V)
