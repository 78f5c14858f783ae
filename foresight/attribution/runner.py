"""One forward pass of the model with hooks that record (and optionally patch) the
graph's activations. Hooks live only for the duration of one `Runner.forward`.

Shapes (B pairs, T tokens, d model width, H heads, dh head width, V vocabulary):
embed [B, T, d]; z[L] (input of the output projection) [B, T, H * dh];
mlp[L] [B, T, d] (the MLP's residual write); logits [B, V] at each prompt's last
position; reads[j] [B, T, d], the residual entering receiver j (graph receiver
order); attn_pre[L] [B, T, d], the output of the output projection, recorded only
where a norm follows it (`Architecture.attn_write_norm`).

Head writes behind a post-norm N (Gemma 2/3, OLMo 2): the attention block adds
N(p) to the residual, p = sum_h z_h W_O[h] + b. Changing the heads in a set P from
z to z' changes the write by N(p + sum_{h in P} (z'_h - z_h) W_O[h]) - N(p): that is
the write change an edge patch adds to its receiver (heads of one layer patched
into the same receiver are replaced jointly; without a post-norm this is the sum of
their single changes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from foresight.architectures.hooks import Adapter, get_adapter
from foresight.encoding import PairBatch
from foresight.next_token import next_token_logits


@dataclass
class Acts:
    """Activations of one forward pass (see the module docstring for shapes)."""

    embed: torch.Tensor | None = None
    z: list[torch.Tensor] = field(default_factory=list)
    mlp: list[torch.Tensor] = field(default_factory=list)
    logits: torch.Tensor | None = None
    reads: list[torch.Tensor] = field(default_factory=list)
    attn_pre: list[torch.Tensor] = field(default_factory=list)

    def detach(self) -> Acts:
        """The same activations detached from the autograd graph."""
        return Acts(
            self.embed.detach(),
            [t.detach() for t in self.z],
            [t.detach() for t in self.mlp],
            self.logits.detach(),
            [t.detach() for t in self.reads],
            [t.detach() for t in self.attn_pre],
        )


ChunkRuns = tuple[PairBatch, Acts, Acts]
"""A chunk of attribution pairs with its clean run and its corrupted run."""


@dataclass
class NodePatch:
    """Replace the activation of every sender i with patched[i] by its value in `source`."""

    source: Acts
    patched: torch.Tensor  # [S] bool, graph sender order


@dataclass
class EdgePatch:
    """For every edge (i, j) with patched[i, j], add source_i - current_i (the sender's
    residual write in `source` minus the one in this run; behind a post-norm, see the
    module docstring) to receiver j's input."""

    source: Acts
    patched: torch.Tensor  # [S, R] bool, graph sender and receiver order


def input_device(model: nn.Module) -> torch.device:
    """The device that the input ids go to: the input embedding's execution device (its
    weight's, or the one an accelerate dispatch hook runs it on)."""
    embeddings = model.get_input_embeddings()
    hook_device = getattr(getattr(embeddings, "_hf_hook", None), "execution_device", None)
    return torch.device(hook_device if hook_device is not None else embeddings.weight.device)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode inside; every module's training flag restored on exit."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, flag in flags:
            module.training = flag


class Runner:
    """Runs the adapted model on token batches with recording/patching hooks."""

    def __init__(self, model: nn.Module, adapter: Adapter | None = None):
        self.adapter = adapter or get_adapter(model)
        self.graph = self.adapter.graph
        self.n_heads, self.head_dim = self.adapter.n_heads, self.adapter.head_dim
        self._weights: list[torch.Tensor] | None = None

    @property
    def weights(self) -> list[torch.Tensor]:
        """Per layer the output projection as [H, dh, d] (computed on first use)."""
        if self._weights is None:
            self._weights = self.adapter.output_weights()
        return self._weights

    def sender_index(self, layer: int, head: int | None) -> int:
        """Index in graph sender order of head `head` (None: the MLP) of `layer`."""
        return 1 + layer * (self.n_heads + 1) + (self.n_heads if head is None else head)

    def heads(self, z: torch.Tensor) -> torch.Tensor:
        """[B, T, H * dh] -> [B, T, H, dh]."""
        return z.unflatten(-1, (self.n_heads, self.head_dim))

    def forward(
        self,
        ids: torch.Tensor,
        last: torch.Tensor,
        embed: Callable[[torch.Tensor], torch.Tensor] | None = None,
        node_patch: NodePatch | None = None,
        edge_patch: EdgePatch | None = None,
        reads: bool = False,
    ) -> Acts:
        """Run on `ids` [B, T]; `embed` maps the embedding output to the tensor used in
        its place; `reads` records receiver inputs on their own autograd path (so a
        gradient there is the gradient through that receiver only)."""
        ad, acts = self.adapter, Acts()
        if edge_patch is not None:
            self.weights  # noqa: B018 - read the projections before hooks are on them
        handles = []

        def on_embed(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
            if embed is not None:
                out = embed(out)
            if node_patch is not None and node_patch.patched[0]:
                out = node_patch.source.embed
            acts.embed = out
            return out

        def on_z(layer: int) -> Callable:
            def hook(module: nn.Module, args: tuple) -> tuple:
                z = args[0]
                if node_patch is not None:
                    mask = node_patch.patched[self.sender_index(layer, 0) : self.sender_index(layer, None)]
                    if mask.any():
                        src = self.heads(node_patch.source.z[layer])
                        z = torch.where(mask[:, None].to(z.device), src, self.heads(z)).flatten(-2)
                acts.z.append(z)
                return (z, *args[1:])

            return hook

        def on_mlp(layer: int) -> Callable:
            def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
                if node_patch is not None and node_patch.patched[self.sender_index(layer, None)]:
                    out = node_patch.source.mlp[layer]
                acts.mlp.append(out)
                return out

            return hook

        def on_attn_pre(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            acts.attn_pre.append(out)

        def on_read(receiver: int) -> Callable:
            def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
                x = args[0] if args else kwargs["hidden_states"]
                if edge_patch is not None:
                    x = x + self._edge_delta(acts, edge_patch, receiver, x)
                if reads:
                    x = x.view_as(x)
                    acts.reads.append(x)
                if args:
                    return (x, *args[1:]), kwargs
                return args, {**kwargs, "hidden_states": x}

            return hook

        try:
            handles.append(ad.embed.register_forward_hook(on_embed))
            for layer in range(ad.n_layers):
                handles.append(ad.attn_out[layer].register_forward_pre_hook(on_z(layer)))
                handles.append(ad.mlp_writes[layer].register_forward_hook(on_mlp(layer)))
                if ad.attn_write_norms[layer] is not None:
                    handles.append(ad.attn_out[layer].register_forward_hook(on_attn_pre))
            if reads or edge_patch is not None:
                modules = [
                    m for layer in range(ad.n_layers) for m in (ad.attn_reads[layer], ad.mlp_reads[layer])
                ]
                for j, module in enumerate([*modules, ad.final_norm]):
                    handles.append(module.register_forward_pre_hook(on_read(j), with_kwargs=True))
            acts.logits = next_token_logits(ad.model, ids, last).to(ids.device)
        finally:
            for handle in handles:
                handle.remove()
        return acts

    def _edge_delta(self, acts: Acts, patch: EdgePatch, receiver: int, x: torch.Tensor) -> torch.Tensor:
        """Sum over patched edges into `receiver` of source write - current write [B, T, d]."""
        col, src = patch.patched[:, receiver], patch.source
        delta = torch.zeros_like(x)
        if col[0]:
            delta = delta + (src.embed - acts.embed).to(x.device)
        for layer, z in enumerate(acts.z):
            mask = col[self.sender_index(layer, 0) : self.sender_index(layer, None)]
            if mask.any():
                diff = (self.heads(src.z[layer]) - self.heads(z)) * mask[:, None].to(z.device, z.dtype)
                write = torch.einsum("bthk,hkd->btd", diff, self.weights[layer].to(z.device, z.dtype))
                norm = self.adapter.attn_write_norms[layer]
                if norm is not None:
                    pre = acts.attn_pre[layer]
                    write = norm(pre + write) - norm(pre)
                delta = delta + write.to(x.device)
            if layer < len(acts.mlp) and col[self.sender_index(layer, None)]:
                delta = delta + (src.mlp[layer] - acts.mlp[layer]).to(x.device)
        return delta
