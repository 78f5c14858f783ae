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
Precision and devices: activations stay in the model's dtype wherever they were
recorded; every difference, product and sum that makes a score is taken in the
accumulation dtype (float32, float64 for float64 models: `accumulation`) on the
scoring device, the device of the input ids, to which tensors recorded on other
devices (a model dispatched over several) are moved. The eap-ig gradient mean is
accumulated there too; since node scores and edge scores without a post-norm are
linear in the gradient, they are computed once from that mean.

Memory per chunk of C pairs (N = C T positions, d width, L layers, H heads of width
dh, V vocabulary, R = 2L + 1 receivers, S = L (H + 1) + 1 senders): with A the
tensors that autograd saves in one forward of the chunk and a = N d + L N (H dh + d)
+ C V the values one run records (embed, z, mlp, logits; L N d more of attn_pre
behind post-norms), a chunk holds at most
- node eap: A + 3a (corrupted run, clean run, the gradients at its activations);
- node eap-ig: A + 5a (corrupted and clean run, the current step's run and
  gradients, the gradient mean);
- edge eap: A + 2a + 2 R N d (the gradients at the receiver reads, stacked) +
  N H (dh + d) (one layer's z change and head writes at a time; R N d more for
  the Jacobian products behind a post-norm);
- edge eap-ig: that, plus a (the current step's run) and R N d (the mean);
plus, for a 16-bit model, one float32 copy of the gradients (a, or R N d). Nothing
of a chunk outlives it but its score sums ([S + 1] or [S, R]), besides the output
projections cached for all chunks (L H dh d) and the runs that a caller keeps for
faithfulness (2a per chunk, `attribute_with_runs`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import torch

from foresight.attribution.runner import Acts, ChunkRuns, Runner
from foresight.attribution.task_metrics import Metric, accumulation
from foresight.encoding import PairBatch


def _diff(corr: torch.Tensor, clean: torch.Tensor, device: torch.device) -> torch.Tensor:
    """corr - clean in accumulation precision on `device`."""
    return accumulation(corr, device) - accumulation(clean, device)


def node_scores(runner: Runner, clean: Acts, corr: Acts, grads: Acts) -> torch.Tensor:
    """[S + 1] in graph node order: (a_n(corr) - a_n(clean)) . grad_n per node, summed over
    pairs and positions; `grads` in accumulation precision on the scoring device."""
    device = grads.embed.device

    def dot(c: torch.Tensor, k: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return (_diff(c, k, device) * g).sum()[None]

    parts = [dot(corr.embed, clean.embed, grads.embed)]
    for layer in range(runner.graph.n_layers):
        heads = runner.heads(_diff(corr.z[layer], clean.z[layer], device)) * runner.heads(grads.z[layer])
        parts += [heads.sum((0, 1, 3)), dot(corr.mlp[layer], clean.mlp[layer], grads.mlp[layer])]
    parts.append(dot(corr.logits, clean.logits, grads.logits))
    return torch.cat(parts)


def _through_norm(norm: torch.nn.Module, pre: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """J_N(p)^T g for every receiver's gradient g: grads [R', N, d] -> [R', N, d] (on grads'
    device), with the norm evaluated at p = `pre` [B, T, d] in float32 on pre's device."""
    with torch.enable_grad():
        x = accumulation(pre.detach()).flatten(0, 1).expand(len(grads), -1, -1).clone().requires_grad_()
        return torch.autograd.grad(norm(x), x, grads.to(pre.device))[0].to(grads.device)


def edge_matrix(
    runner: Runner, clean: Acts, corr: Acts, grads: Sequence[torch.Tensor], attn_pre: Sequence[torch.Tensor]
) -> torch.Tensor:
    """[S, R]: entry (s, r) = (write_s(corr) - write_s(clean)) . g_r summed over pairs and
    positions, where `grads` [B, T, d] per receiver are the gradients at the receiver
    inputs in accumulation precision on the scoring device; `attn_pre` holds that run's
    attn_pre (for post-norm writes). Receivers at or before the sender's block stay 0.

    A head's write change is dz_h W_O[h] [N, d]; its row is one matrix product of the
    writes [H, N d] with the gradients [R', N d] of the receivers after the head."""
    g = torch.stack(list(grads)).flatten(1, 2)  # [R, N, d]
    device, n_heads = g.device, runner.n_heads
    flat = g.flatten(1)
    out = torch.zeros(len(runner.graph.senders()), len(g), dtype=g.dtype, device=device)
    out[0] = flat @ _diff(corr.embed, clean.embed, device).flatten()
    norms = runner.adapter.attn_write_norms
    for layer in range(runner.graph.n_layers):
        first, head = 2 * layer + 1, runner.sender_index(layer, 0)  # receiver mlp_read[layer]
        dz = runner.heads(_diff(corr.z[layer], clean.z[layer], device)).flatten(0, 1).transpose(0, 1)
        writes = torch.bmm(dz, runner.weights[layer].to(device=device, dtype=g.dtype))  # [H, N, d]
        after = g[first:]
        if norms[layer] is not None:
            after = _through_norm(norms[layer], attn_pre[layer], after)
        out[head : head + n_heads, first:] = writes.flatten(1) @ after.flatten(1).T
        mlp = _diff(corr.mlp[layer], clean.mlp[layer], device).flatten()
        out[head + n_heads, first + 1 :] = flat[first + 1 :] @ mlp
    return out


def _gradients(
    runner: Runner,
    chunk: PairBatch,
    metric: Metric,
    embed: Callable[[torch.Tensor], torch.Tensor],
    edges: bool,
    reference: torch.Tensor | None = None,
) -> tuple[Acts, list[torch.Tensor], torch.Tensor]:
    """For one run on the clean ids with the embedding mapped by `embed`: its activations
    (detached; attn_pre but no reads), the gradients of sum(metric) over the chunk at the
    receiver reads (edges) or at embed, z, mlp and logits (nodes), in the model's dtype
    (the division by the number of pairs is left to float32, where it cannot underflow),
    and the per-pair metric [B]."""
    with torch.enable_grad():
        acts = runner.forward(chunk.clean, chunk.last, embed=embed, reads=edges)
        values = metric(acts.logits, chunk, acts.logits.detach() if reference is None else reference)
        targets = acts.reads if edges else [acts.embed, *acts.z, *acts.mlp, acts.logits]
        grads = torch.autograd.grad(values.sum(), targets, allow_unused=True, materialize_grads=True)
    kept = replace(acts, reads=[]).detach()
    return kept, list(grads), values.detach()


def _add(
    total: list[torch.Tensor] | None, grads: list[torch.Tensor], weight: float, device: torch.device
) -> list[torch.Tensor]:
    """total + weight * grads, elementwise, in accumulation precision on `device` (grads
    may be overwritten)."""
    if total is None:
        return [accumulation(g, device).mul_(weight) for g in grads]
    for t, g in zip(total, grads, strict=True):
        t.add_(g.to(device), alpha=weight)
    return total


def _node_grads(runner: Runner, grads: list[torch.Tensor]) -> Acts:
    """The node gradients (embed, z, mlp, logits, in that order) as `Acts`."""
    n = runner.graph.n_layers
    return Acts(grads[0], grads[1 : 1 + n], grads[1 + n : 1 + 2 * n], grads[-1])


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
    (level "node") or edge order (level "edge"), in accumulation precision, with the
    batch-mean clean and corrupted metric. Each chunk's clean and corrupted runs are
    appended to `runs` if given (to measure faithfulness on the same pairs without
    running them again); otherwise a chunk's activations are freed before the next."""
    edges = level == "edge"
    n_total, device = len(batch), batch.clean.device
    per_step = edges and any(norm is not None for norm in runner.adapter.attn_write_norms)
    total: torch.Tensor | None = None
    clean_sum = corr_sum = 0.0
    for start in range(0, n_total, batch_size):
        chunk = batch.slice(start, start + batch_size)
        with torch.no_grad():
            corr = runner.forward(chunk.corrupted, chunk.last)
        if ig_steps == 0:
            clean, grads, values = _gradients(runner, chunk, metric, _leaf, edges)
            grads, scores = _add(None, grads, 1 / n_total, device), None
        else:
            with torch.no_grad():
                clean = runner.forward(chunk.clean, chunk.last)
            values = metric(clean.logits, chunk, clean.logits)
            grads, scores = None, None
            for k in range(ig_steps):
                embed = _interpolate(clean, corr, (k + 0.5) / ig_steps)
                step, step_grads = _gradients(runner, chunk, metric, embed, edges, clean.logits)[:2]
                if per_step:  # a post-norm makes the edge score nonlinear in the gradient
                    part = edge_matrix(
                        runner, clean, corr, _add(None, step_grads, 1 / n_total, device), step.attn_pre
                    )
                    scores = part / ig_steps if scores is None else scores + part / ig_steps
                else:
                    grads = _add(grads, step_grads, 1 / (ig_steps * n_total), device)
                del step, step_grads  # before the next step's run
        if scores is None:
            scores = (
                edge_matrix(runner, clean, corr, grads, clean.attn_pre)
                if edges
                else node_scores(runner, clean, corr, _node_grads(runner, grads))
            )
        total = scores if total is None else total + scores
        if runs is not None:
            runs.append((chunk, Acts(clean.embed, clean.z, clean.mlp, clean.logits), corr))
        clean_sum += float(values.sum())
        corr_sum += float(metric(corr.logits, chunk, clean.logits).sum())
        del clean, corr, grads, scores
    total = total.cpu()
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
    pairs = graph.edge_pairs()
    return (
        torch.tensor([senders[s] for s, _ in pairs]),
        torch.tensor([receivers[r] for _, r in pairs]),
    )
