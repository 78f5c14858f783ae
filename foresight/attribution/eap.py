"""Gradient attribution: `eap` (attribution patching) and `eap-ig` (integrated gradients).

With M the batch-mean metric, a_n a node's activation (see `runner`), and
delta_n = a_n(corrupted) - a_n(clean), summed over pairs and positions:

- eap node:  score(n) = delta_n . dM/da_n at the clean run. This is the first-order
  term of patching n, i.e. d/da M(a_n = clean + a * delta_n) at a = 0.
- eap edge:  score(s->r) = (write_s(corrupted) - write_s(clean)) . dM/dx_r at the clean
  run, where write_s is s's residual write (a head: z_h @ W_O[h]) and x_r is the
  residual entering receiver r's norm, differentiated through r alone: the
  first-order term of adding the sender's change to r's input only.
  Identity: since the residual stream reaches the output only through the
  receivers' norms, dM/d write_s = sum over receivers r downstream of s of
  dM/dx_r, so node score(s) = sum over r of edge score(s->r) for every sender
  (no direct-path term: `logits` is the final-norm receiver).
  Behind a post-norm N on the attention output (`Architecture.attn_write_norm`:
  Gemma 2/3, OLMo 2) a head's write change is N(p + delta_z_h W_O[h]) - N(p)
  (see `runner`), whose first-order term is J_N(p) (delta_z_h W_O[h]); the edge
  score is (delta_z_h W_O[h]) . J_N(p)^T dM/dx_r: the first-order term of that edge
  patch, exactly as without the norm. The identity above still holds. The exact
  patch is then nonlinear in the head's change even where the rest of the model is
  linear, so eap and patching agree to first order only (in delta).
- eap-ig: the embedding output e (the residual entering block 0; for GPT-2
  wte + wpe) is interpolated, e(a) = e_clean + a (e_corr - e_clean), and the
  model is run from e(a) at the midpoints a = (k + 1/2)/m, k < m. Node and edge
  scores are as for eap with the gradient replaced by its mean over the m runs
  (delta_n stays the clean-to-corrupted change of the real runs). Completeness
  holds for the embed node: score(embed) = M(corrupted) - M(clean) + O(1/m^2)
  (midpoint rule), since the model's output is a function of e alone.

`logits` is a node too: its activation is the logits at `last`, so its eap
score is delta_logits . dM/dlogits (exact for the linear logit difference).
Products are accumulated in float32 (float64 for float64 models).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from foresight.attribution.runner import Acts, ChunkRuns, Runner
from foresight.attribution.task_metrics import Metric, accumulation
from foresight.encoding import PairBatch


def _dot(delta: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    return (accumulation(delta) * accumulation(grad)).sum()


def node_scores(runner: Runner, delta: Acts, grads: Acts) -> torch.Tensor:
    """[S + 1] float64 in graph node order: delta . grad per node."""
    parts = [_dot(delta.embed, grads.embed)[None]]
    for layer in range(runner.graph.n_layers):
        heads = runner.heads(accumulation(delta.z[layer])) * runner.heads(accumulation(grads.z[layer]))
        parts += [heads.sum((0, 1, 3)), _dot(delta.mlp[layer], grads.mlp[layer])[None]]
    parts.append(_dot(delta.logits, grads.logits)[None])
    return torch.cat(parts).double().cpu()


def _through_norm(norm: torch.nn.Module, pre: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """J_N(p)^T g for every receiver's gradient g: grads [R, N, d] -> [R, N, d], with the norm
    evaluated at p = `pre` [B, T, d] in float32."""
    with torch.enable_grad():
        x = accumulation(pre.detach()).flatten(0, 1).expand(len(grads), -1, -1).clone().requires_grad_()
        return torch.autograd.grad(norm(x), x, grads)[0]


def edge_matrix(runner: Runner, delta: Acts, grads_at: Acts) -> torch.Tensor:
    """[S, R] float64: (change of sender write) . (gradient at receiver input); `grads_at`
    holds the gradients at the reads and the run's attn_pre (for post-norm writes)."""
    grads = torch.stack([accumulation(g).flatten(0, 1) for g in grads_at.reads])  # [R, N, d]
    rows = [torch.einsum("nd,rnd->r", accumulation(delta.embed).flatten(0, 1), grads)[None]]
    norms = runner.adapter.attn_write_norms
    for layer in range(runner.graph.n_layers):
        writes = runner.head_writes(accumulation(delta.z[layer]), layer).flatten(0, 1)  # [N, H, d]
        if norms[layer] is None:
            rows.append(torch.einsum("nhd,rnd->hr", writes, grads))
        else:
            through = _through_norm(norms[layer], grads_at.attn_pre[layer], grads)
            rows.append(torch.einsum("nhd,rnd->hr", writes, through))
        rows.append(torch.einsum("nd,rnd->r", accumulation(delta.mlp[layer]).flatten(0, 1), grads)[None])
    return torch.cat(rows).double().cpu()


def _gradients(
    runner: Runner,
    chunk: PairBatch,
    metric: Metric,
    n_total: int,
    embed: Callable[[torch.Tensor], torch.Tensor],
    edges: bool,
    reference: torch.Tensor | None = None,
) -> tuple[Acts, Acts, torch.Tensor]:
    """Activations (detached), gradients of sum(metric) / n_total at them, and the
    per-pair metric [B], for one run on the clean ids with the embedding mapped by `embed`."""
    with torch.enable_grad():
        acts = runner.forward(chunk.clean, chunk.last, embed=embed, reads=edges)
        values = metric(acts.logits, chunk, acts.logits.detach() if reference is None else reference)
        targets = acts.reads if edges else [acts.embed, *acts.z, *acts.mlp, acts.logits]
        grads = torch.autograd.grad(
            values.sum() / n_total, targets, allow_unused=True, materialize_grads=True
        )
    n = runner.graph.n_layers
    grad_acts = (
        Acts(reads=list(grads), attn_pre=[a.detach() for a in acts.attn_pre])
        if edges
        else Acts(grads[0], list(grads[1 : 1 + n]), list(grads[1 + n : 1 + 2 * n]), grads[-1])
    )
    return acts.detach(), grad_acts, values.detach()


def _scores(runner: Runner, delta: Acts, grads: Acts, edges: bool) -> torch.Tensor:
    return edge_matrix(runner, delta, grads) if edges else node_scores(runner, delta, grads)


def _delta(corr: Acts, clean: Acts) -> Acts:
    return Acts(
        corr.embed - clean.embed,
        [c - k for c, k in zip(corr.z, clean.z, strict=True)],
        [c - k for c, k in zip(corr.mlp, clean.mlp, strict=True)],
        corr.logits - clean.logits,
    )


def gradient_attribution(
    runner: Runner,
    batch: PairBatch,
    metric: Metric,
    level: str,
    ig_steps: int,
    batch_size: int,
    runs: list[ChunkRuns] | None = None,
) -> tuple[np.ndarray, float, float]:
    """eap (ig_steps = 0) or eap-ig (ig_steps = m >= 1) scores in graph node order
    (level "node") or edge order (level "edge"), with the batch-mean clean and
    corrupted metric. Each chunk's clean and corrupted runs are appended to `runs`
    if given (to measure faithfulness on the same pairs without running them again)."""
    edges = level == "edge"
    n_total = len(batch)
    total: torch.Tensor | None = None
    clean_sum = corr_sum = 0.0
    for start in range(0, n_total, batch_size):
        chunk = batch.slice(start, start + batch_size)
        with torch.no_grad():
            corr = runner.forward(chunk.corrupted, chunk.last)
        if ig_steps == 0:
            clean, grads, values = _gradients(runner, chunk, metric, n_total, _leaf, edges)
            reference = clean.logits
            scores = _scores(runner, _delta(corr, clean), grads, edges)
        else:
            with torch.no_grad():
                clean = runner.forward(chunk.clean, chunk.last)
            reference = clean.logits
            values = metric(clean.logits, chunk, reference)
            delta = _delta(corr, clean)
            scores = torch.zeros((), dtype=torch.float64)
            for k in range(ig_steps):
                embed = _interpolate(clean, corr, (k + 0.5) / ig_steps)
                grads = _gradients(runner, chunk, metric, n_total, embed, edges, reference)[1]
                scores = scores + _scores(runner, delta, grads, edges) / ig_steps
        total = scores if total is None else total + scores
        if runs is not None:
            runs.append((chunk, Acts(clean.embed, clean.z, clean.mlp, clean.logits), corr))
        clean_sum += float(values.sum())
        corr_sum += float(metric(corr.logits, chunk, reference).sum())
    if edges:
        total = total[edge_index(runner)]
    return total.numpy(), clean_sum / n_total, corr_sum / n_total


def _leaf(e: torch.Tensor) -> torch.Tensor:
    return e.detach().requires_grad_()


def _interpolate(clean: Acts, corr: Acts, alpha: float) -> Callable[[torch.Tensor], torch.Tensor]:
    def embed(e: torch.Tensor) -> torch.Tensor:
        return (clean.embed + alpha * (corr.embed - clean.embed)).requires_grad_()

    return embed


def edge_index(runner: Runner) -> tuple[torch.Tensor, torch.Tensor]:
    """(sender indices, receiver indices) of the graph's edges, in edge order."""
    graph = runner.graph
    senders = {n: i for i, n in enumerate(graph.senders())}
    receivers = {n: j for j, n in enumerate(graph.receivers())}
    pairs = graph.edge_names()
    return (
        torch.tensor([senders[s] for s, _ in pairs]),
        torch.tensor([receivers[r] for _, r in pairs]),
    )
