"""The updater: component -> parameter masks, masked LoRA, masked full SFT, strategies.

Expected slices are written out here from the tiny configs (width 32, 4 heads,
head_dim 8, 2 layers; the Llama-style families with 2 key/value heads), not taken from the
code under test.
"""

from __future__ import annotations

import copy

import pytest
import torch
from tiny_models import FAMILIES, tiny_model
from transformers import (
    OPTConfig,
    OPTForCausalLM,
)

from foresight.architectures.parameters import ComponentMap
from foresight.circuits import circuit
from foresight.updater import apply_gradient_masks, apply_masked_lora, kind_counts, select_random

VOCAB, WIDTH, HEADS, D, LAYERS = 64, 32, 4, 8, 2
ARCHS = FAMILIES
SEPARATE_QKV = ("llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "olmo2")  # q_proj, k_proj, v_proj
GQA = (*SEPARATE_QKV, "phi3")  # 2 query heads per key/value head


def make_model(arch: str) -> torch.nn.Module:
    return tiny_model(arch, vocab=VOCAB, width=WIDTH, layers=LAYERS, heads=HEADS, kv_heads=2).train()


def rows(*ranges: tuple[int, int]) -> list[int]:
    return [i for start, stop in ranges for i in range(start, stop)]


def head_slices(arch: str, layer: int, head: int) -> dict[str, tuple[int, list[int]]]:
    """param key -> (dim, indices) that head `head` of `layer` owns (weights only)."""
    h, g = head, head // 2  # g: the key/value head of query head h (GQA families)
    if arch == "phi3":  # qkv_proj out = [q 32 | k 16 | v 16]
        p = f"model.layers.{layer}.self_attn"
        qkv = rows((8 * h, 8 * h + 8), (32 + 8 * g, 40 + 8 * g), (48 + 8 * g, 56 + 8 * g))
        return {f"{p}.qkv_proj.weight": (0, qkv), f"{p}.o_proj.weight": (1, rows((8 * h, 8 * h + 8)))}
    if arch in SEPARATE_QKV:
        p = f"model.layers.{layer}.self_attn"
        return {
            f"{p}.q_proj.weight": (0, rows((8 * h, 8 * h + 8))),
            f"{p}.k_proj.weight": (0, rows((8 * g, 8 * g + 8))),
            f"{p}.v_proj.weight": (0, rows((8 * g, 8 * g + 8))),
            f"{p}.o_proj.weight": (1, rows((8 * h, 8 * h + 8))),
        }
    if arch == "gpt2":  # Conv1D weights are [in, out]; c_attn out = [q | k | v], 32 each
        p = f"transformer.h.{layer}.attn"
        qkv = rows((8 * h, 8 * h + 8), (32 + 8 * h, 40 + 8 * h), (64 + 8 * h, 72 + 8 * h))
        return {f"{p}.c_attn.weight": (1, qkv), f"{p}.c_proj.weight": (0, rows((8 * h, 8 * h + 8)))}
    p = f"gpt_neox.layers.{layer}.attention"  # query_key_value out = [head][q, k, v][8]
    return {
        f"{p}.query_key_value.weight": (0, rows((24 * h, 24 * h + 24))),
        f"{p}.dense.weight": (1, rows((8 * h, 8 * h + 8))),
    }


def mlp_keys(arch: str, layer: int) -> list[str]:
    names = {
        "phi3": [f"model.layers.{layer}.mlp.{n}_proj" for n in ("gate_up", "down")],
        "gpt2": [f"transformer.h.{layer}.mlp.{n}" for n in ("c_fc", "c_proj")],
        "gpt_neox": [f"gpt_neox.layers.{layer}.mlp.{n}" for n in ("dense_h_to_4h", "dense_4h_to_h")],
    }.get(arch, [f"model.layers.{layer}.mlp.{n}_proj" for n in ("gate", "up", "down")])
    biased = arch in ("gpt2", "gpt_neox")
    return [f"{n}.weight" for n in names] + ([f"{n}.bias" for n in names] if biased else [])


def expected_masks(arch: str, state: dict[str, torch.Tensor], selected: set[str], biases: bool):
    """param key -> bool mask of the entries that may change, for every parameter of the model."""
    masks = {k: torch.zeros_like(v, dtype=torch.bool) for k, v in state.items()}
    for c in selected:
        if c.startswith("m"):
            for key in mlp_keys(arch, int(c[1:])):
                masks[key][...] = biases or key.endswith("weight")
            continue
        layer, head = (int(x) for x in c[1:].split(".h"))
        for key, (dim, idx) in head_slices(arch, layer, head).items():
            masks[key].index_fill_(dim, torch.tensor(idx), True)
            bias = key.replace("weight", "bias")
            if biases and bias in masks:  # a bias follows its rows: out-features of q/k/v, all of o
                masks[bias][idx if dim == (1 if arch == "gpt2" else 0) else slice(None)] = True
    return masks


def slices(arch: str, selected: set[str]) -> list[tuple[str, int, list[int]]]:
    """Every (key, dim, indices) weight slice that the selection must change."""
    out = []
    for c in sorted(selected):
        if c.startswith("m"):
            out += [(k, 0, []) for k in mlp_keys(arch, int(c[1:])) if k.endswith("weight")]
        else:
            layer, head = (int(x) for x in c[1:].split(".h"))
            out += [(k, dim, idx) for k, (dim, idx) in head_slices(arch, layer, head).items()]
    return out


def part(t: torch.Tensor, dim: int, idx: list[int]) -> torch.Tensor:
    return t if not idx else t.index_select(dim, torch.tensor(idx))


def optimizer_for(model: torch.nn.Module, attach) -> torch.optim.Optimizer:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    attach(optimizer)
    return optimizer


def train(model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int = 5, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        ids = torch.randint(0, VOCAB, (2, 8), generator=generator)
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def check_update(arch, before, after, selected, biases) -> None:
    masks = expected_masks(arch, before, selected, biases)
    assert set(after) == set(before)
    for key, mask in masks.items():
        diff = after[key] - before[key]
        assert torch.equal(diff[~mask], torch.zeros_like(diff[~mask])), f"{key} changed outside the selection"
    for key, dim, idx in slices(arch, selected):
        assert part(after[key] - before[key], dim, idx).abs().sum() > 0, f"{key} {idx[:1]}: not updated"


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


OUT_PROJ = {
    **{arch: "model.layers.0.self_attn.o_proj" for arch in GQA},
    "gpt2": "transformer.h.0.attn.c_proj",
    "gpt_neox": "gpt_neox.layers.0.attention.dense",
}


def out_proj_input(model: torch.nn.Module, arch: str, ids: torch.Tensor) -> torch.Tensor:
    """The input of layer 0's attention output projection: [batch, seq, heads * head_dim]."""
    captured = []
    handle = model.get_submodule(OUT_PROJ[arch]).register_forward_pre_hook(
        lambda _, args: captured.append(args[0].detach())
    )
    model(input_ids=ids)
    handle.remove()
    return captured[0]


@pytest.mark.parametrize("arch", ARCHS)
def test_head_slices_are_what_the_model_computes(arch: str) -> None:
    """Perturbing the q/k/v slices of one head changes only that head's (kv group's) output.
    OLMo 2 normalises the whole q and k projections (one RMS over all heads), so there a head's
    q/k rows move every head; its v rows are checked alone."""
    model = make_model(arch).eval()
    ids = torch.randint(0, VOCAB, (1, 6), generator=torch.Generator().manual_seed(0))
    base = out_proj_input(model, arch, ids)
    for head in range(HEADS):
        perturbed = copy.deepcopy(model)
        with torch.no_grad():
            for key, (dim, idx) in head_slices(arch, 0, head).items():
                coupled = arch == "olmo2" and (".q_proj" in key or ".k_proj" in key)
                if not key.startswith(OUT_PROJ[arch]) and not coupled:
                    weight = perturbed.get_parameter(key)
                    weight.index_add_(dim, torch.tensor(idx), torch.randn_like(part(weight, dim, idx)))
        new = out_proj_input(perturbed, arch, ids)
        changed = {
            h
            for h in range(HEADS)
            if not torch.allclose(base[..., 8 * h : 8 * h + 8], new[..., 8 * h : 8 * h + 8])
        }
        assert changed == ({head // 2 * 2, head // 2 * 2 + 1} if arch in GQA else {head})


@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_masks(arch: str) -> None:
    model = make_model(arch)
    selected = {"a0.h1", "a1.h3", "m1"}
    expected = expected_masks(arch, state(model), selected, biases=True)
    masks = ComponentMap(model).parameter_masks(selected)
    for key, mask in expected.items():
        assert torch.equal(masks.get(key, torch.zeros_like(mask)), mask), key


@pytest.mark.parametrize("arch", ARCHS)
def test_lora_updates_only_the_selected_slices(arch: str) -> None:
    model = make_model(arch)
    before = state(model)
    selected = {"a0.h1", "m1"}
    lora = apply_masked_lora(model, selected, rank=4, alpha=8)
    train(lora.model, optimizer_for(lora.model, lora.attach))
    merged = lora.merged_state_dict()
    check_update(arch, before, merged, selected, biases=False)
    peft_merged = lora.model.merge_and_unload().state_dict()
    for key, value in merged.items():
        torch.testing.assert_close(peft_merged[key], value)


@pytest.mark.parametrize("arch", ARCHS)
def test_full_mode_updates_only_the_selected_slices(arch: str) -> None:
    model = make_model(arch)
    before = state(model)
    selected = {"a0.h1", "m1"}
    masks = apply_gradient_masks(model, selected)
    train(model, optimizer_for(model, masks.attach))
    check_update(arch, before, state(model), selected, biases=True)
    expected = expected_masks(arch, before, selected, biases=True)
    ids = torch.arange(8).view(1, 8)
    model(input_ids=ids, labels=ids).loss.backward()
    for key, param in model.named_parameters():
        assert param.grad is None or not param.grad[~expected[key]].any(), f"{key}: gradient outside the mask"
    assert masks.trainable_parameters() == sum(int(m.sum()) for m in expected.values())


def test_lora_trainable_parameters_count_only_unmasked_entries() -> None:
    lora = apply_masked_lora(make_model("llama"), {"a0.h1", "m1"}, rank=4)
    # q, k, v: A [4, 32] + 8 rows of B; o: B [32, 4] + 8 columns of A
    attention = 4 * (4 * 32 + 8 * 4)
    mlp = 2 * (4 * 32 + 4 * 64) + (
        4 * 64 + 4 * 32
    )  # gate, up: A [4, 32] + B [64, 4]; down: A [4, 64] + B [32, 4]
    assert lora.trainable_parameters() == attention + mlp


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_set_components_takes_effect_on_the_next_step(mode: str) -> None:
    model = make_model("llama")
    before = state(model)
    if mode == "lora":
        updater = apply_masked_lora(model, {"a0.h1"}, rank=4, dynamic=True)
        trained, merged = updater.model, updater.merged_state_dict
    else:
        updater = apply_gradient_masks(model, {"a0.h1"}, dynamic=True)
        trained, merged = model, lambda: state(model)
    optimizer = optimizer_for(trained, updater.attach)  # kept across the switch, with its Adam moments
    train(trained, optimizer, steps=3)
    at_switch = merged()
    check_update("llama", before, at_switch, {"a0.h1"}, biases=False)
    updater.set_components({"a1.h2"})
    train(trained, optimizer, steps=3, seed=2)
    after = merged()
    check_update("llama", at_switch, after, {"a1.h2"}, biases=False)


def test_set_components_outside_the_lora_modules_needs_dynamic() -> None:
    lora = apply_masked_lora(make_model("llama"), {"a0.h1"})
    lora.set_components({"a0.h2"})  # same modules: fine
    with pytest.raises(ValueError, match=r"\['a1.h0', 'm0'\].*dynamic=True"):
        lora.set_components({"a1.h0", "m0"})
    full = apply_gradient_masks(make_model("llama"), {"a0.h1"})
    with pytest.raises(ValueError, match=r"\['m1'\].*dynamic=True"):
        full.set_components({"m1"})


@pytest.mark.parametrize(
    "apply", [apply_masked_lora, apply_gradient_masks, lambda m, c: ComponentMap(m).feature_masks(c)]
)
def test_unknown_components_are_named(apply) -> None:
    with pytest.raises(ValueError, match=r"\['a0.h4', 'a2.h0', 'embed', 'm2'\]"):
        apply(make_model("gpt2"), {"a0.h1", "a0.h4", "a2.h0", "m2", "embed"})


def test_unknown_architecture_is_named() -> None:
    config = OPTConfig(
        vocab_size=VOCAB, hidden_size=16, ffn_dim=32, num_hidden_layers=1, num_attention_heads=2
    )
    supported = "gemma2, gemma3_text, gpt2, gpt_neox, llama, mistral, olmo2, phi3, qwen2, qwen3"
    with pytest.raises(ValueError, match=rf"'opt'.*{supported}.*families/"):
        apply_masked_lora(OPTForCausalLM(config), {"a0.h0"})


SCORES = {"embed": 9.0, "logits": -9.0, "a0.h0": 0.1, "a0.h1": -3.0, "a1.h0": 2.0, "m0": 0.5, "m1": -1.0}


def test_static_is_the_circuit_of_heads_and_mlps() -> None:
    assert circuit(SCORES, 3) == {"a0.h1", "a1.h0", "m1"}
    assert circuit(SCORES, 1) == {"a0.h1"}


@pytest.mark.parametrize("k", [0, -1, 6])
def test_k_out_of_range(k: int) -> None:
    with pytest.raises(ValueError, match=rf"k = {k}.*1\.\.5"):
        circuit(SCORES, k)


def test_random_matches_the_reference_counts_and_is_seeded() -> None:
    candidates = [f"a{layer}.h{h}" for layer in range(4) for h in range(8)] + [
        f"m{layer}" for layer in range(4)
    ]
    static = circuit({c: float(i) for i, c in enumerate(candidates)}, 10)
    n_heads, n_mlps = kind_counts(static)
    assert (n_heads, n_mlps) == (6, 4)
    draws = [select_random([*candidates, "embed"], n_heads, n_mlps, seed) for seed in (0, 0, 1)]
    assert kind_counts(draws[0]) == (n_heads, n_mlps) and draws[0] <= set(candidates)
    assert draws[0] == draws[1] and draws[0] != draws[2]
    with pytest.raises(ValueError, match="cannot draw 5 of 4"):
        select_random(candidates, 1, 5, 0)
