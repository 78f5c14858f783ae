"""A planted induction circuit: a 2-layer GPT-2 with hand-set weights whose induction task is
computed by known heads, beside random distractor heads that carry other signal.

Residual stream (d = 48), one block of dimensions per variable:
TOK 0-7 (token one-hot), POS 8-15 (position one-hot), PREV 16-23 (the previous token, written
by a0.h0), OUT 24-31 (the copied token, written by a1.h0, read by the unembedding), DIST 32-43
(written by the layer-0 distractors), NOISE 44-45 (written by the layer-1 distractors, read by
the unembedding rows of the noise tokens 8 and 9), ANCHOR 46 (constant c: every layer-0
position has the same LayerNorm scale), SINK 47 (never written). Every read matrix has
column sums 0 (its SINK row cancels the rest), so LayerNorm's mean subtraction never reaches a
head or the logits; what LayerNorm's scale couples is the only path between distractors and
the task's logits.

Heads (4 per layer, d_head 12; MLPs are all zeros, so they output exactly 0):
- a0.h0, previous-token head: queries POS p, keys POS p - 1; copies TOK to PREV.
- a1.h0, induction head: queries TOK, keys PREV; copies TOK to OUT.
- a0.h1 (uniform attention), a0.h2 (attends to itself), a0.h3 (previous-token pattern):
  random value/output maps TOK -> DIST.
- a1.h1..h3: uniform attention, random maps DIST and PREV -> NOISE.

Task (`PlantedTask`, words t0..t7): prompt <bos> x0 A B x3 x4 A, answer B. Two corruptions
(half of the pairs each): "first A" (the first A becomes a new word; wrong answer: a word not
in the prompt) loses the induction match, which only the path embed -> a0.h0 -> a1.h0 -> logits
explains; "B" (B becomes B', the wrong answer) changes the copied value, carried by
embed -> a1.h0 -> logits. The planted circuit is therefore the heads a0.h0, a1.h0 and the
edges embed->a0, a0.h0->a1, embed->a1, a1.h0->logits.
"""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from foresight.encoding import PairBatch, encode_pairs
from foresight.factory.tokenizer import SPECIAL_TOKENS, build_tokenizer
from foresight.tasks.base import AttributionPair, Example, Task

WORDS = [f"t{i}" for i in range(8)] + ["n8", "n9"]  # content tokens, noise tokens
FIRST = len(SPECIAL_TOKENS)  # the id of t0 (the word-level tokenizer puts its specials first)
N_TOKENS, VOCAB, N_POS, D, HEADS, D_HEAD = 8, FIRST + len(WORDS), 8, 48, 4, 12
TOK, POS, PREV, OUT, DIST, NOISE, ANCHOR, SINK = 0, 8, 16, 24, 32, 44, 46, 47
PLANTED_NODES = {"a0.h0", "a1.h0"}
PLANTED_EDGES = {"embed->a0", "a0.h0->a1", "embed->a1", "a1.h0->logits"}


def _zero_sum(matrix: torch.Tensor) -> torch.Tensor:
    """`matrix` [D, n] with its SINK row set so that every column sums to 0."""
    matrix[SINK] = 0
    matrix[SINK] = -matrix.sum(0)
    return matrix


def _set_attention(layer: torch.nn.Module, head: int, wq: torch.Tensor, wk: torch.Tensor, wv: torch.Tensor,
                   wo: torch.Tensor) -> None:  # fmt: skip
    """Head `head`'s query, key, value [D, D_HEAD] and output [D_HEAD, D] maps."""
    cols = slice(head * D_HEAD, (head + 1) * D_HEAD)
    w = layer.attn.c_attn.weight  # [D, 3 D]: x @ w = [q | k | v]
    w[:, cols] = _zero_sum(wq)
    w[:, D + cols.start : D + cols.stop] = _zero_sum(wk)
    w[:, 2 * D + cols.start : 2 * D + cols.stop] = _zero_sum(wv)
    layer.attn.c_proj.weight[cols] = wo


def planted_model(seed: int = 0, beta: float = 60.0, anchor: float = 10.0) -> GPT2LMHeadModel:
    """The planted model (module docstring) in float64 and eval mode; `beta` sets how sharp the
    planted heads attend, the distractors' random maps come from `seed`."""
    # no dropout: SFT on it is deterministic
    config = GPT2Config(vocab_size=VOCAB, n_embd=D, n_layer=2, n_head=HEADS, n_positions=N_POS,
                        tie_word_embeddings=False, attn_implementation="eager",
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)  # fmt: skip
    model = GPT2LMHeadModel(config).double().eval()
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    def block(rows: int, offset: int, values: torch.Tensor, cols: int = D_HEAD) -> torch.Tensor:
        m = torch.zeros(D, cols, dtype=torch.float64)
        m[offset : offset + rows] = values
        return m

    eye = torch.eye(N_TOKENS, D_HEAD, dtype=torch.float64)
    shift = torch.zeros(N_POS, D_HEAD, dtype=torch.float64)  # POS p -> key dim p + 1
    shift[torch.arange(N_POS - 1), torch.arange(1, N_POS)] = 1
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for ln in (
            model.transformer.ln_f,
            *(b.ln_1 for b in model.transformer.h),
            *(b.ln_2 for b in model.transformer.h),
        ):
            ln.weight.fill_(1.0)
        model.transformer.wte.weight[FIRST : FIRST + N_TOKENS, TOK : TOK + N_TOKENS] = torch.eye(N_TOKENS)
        model.transformer.wpe.weight[:, POS : POS + N_POS] = torch.eye(N_POS)
        model.transformer.wpe.weight[:, ANCHOR] = anchor
        zero = torch.zeros(D, D_HEAD, dtype=torch.float64)
        to_block = lambda offset, n=N_TOKENS: torch.cat(  # noqa: E731  [D_HEAD, D]: head dim i -> offset + i
            [torch.zeros(D_HEAD, offset), torch.eye(D_HEAD, n), torch.zeros(D_HEAD, D - offset - n)], 1
        ).double()
        layer0, layer1 = model.transformer.h
        # a0.h0: previous-token head
        _set_attention(layer0, 0, block(N_POS, POS, beta * eye), block(N_POS, POS, shift),
                       block(N_TOKENS, TOK, eye), to_block(PREV))  # fmt: skip
        # a0.h1 uniform, a0.h2 self, a0.h3 previous-token pattern: random TOK -> DIST
        dist_out = lambda: torch.cat(  # noqa: E731
            [torch.zeros(D_HEAD, DIST), rand(D_HEAD, 12), torch.zeros(D_HEAD, D - DIST - 12)], 1
        )
        _set_attention(
            layer0, 1, zero.clone(), zero.clone(), block(N_TOKENS, TOK, rand(N_TOKENS, D_HEAD)), dist_out()
        )
        _set_attention(layer0, 2, block(N_POS, POS, beta * eye), block(N_POS, POS, eye),
                       block(N_TOKENS, TOK, rand(N_TOKENS, D_HEAD)), dist_out())  # fmt: skip
        _set_attention(layer0, 3, block(N_POS, POS, beta * eye), block(N_POS, POS, shift),
                       block(N_TOKENS, TOK, rand(N_TOKENS, D_HEAD)), dist_out())  # fmt: skip
        # a1.h0: induction head
        _set_attention(layer1, 0, block(N_TOKENS, TOK, beta * eye), block(N_TOKENS, PREV, eye),
                       block(N_TOKENS, TOK, eye), to_block(OUT))  # fmt: skip
        # a1.h1..h3: uniform attention, random (DIST, PREV) -> NOISE
        for head in (1, 2, 3):
            reads = torch.zeros(D, D_HEAD, dtype=torch.float64)
            reads[DIST : DIST + 12] = rand(12, D_HEAD)
            reads[PREV : PREV + N_TOKENS] = rand(N_TOKENS, D_HEAD)
            out = torch.zeros(D_HEAD, D, dtype=torch.float64)
            out[:, NOISE : NOISE + 2] = 0.3 * rand(D_HEAD, 2)
            _set_attention(layer1, head, zero.clone(), zero.clone(), reads, out)
        unembed = torch.zeros(D, VOCAB, dtype=torch.float64)
        unembed[OUT : OUT + N_TOKENS, FIRST : FIRST + N_TOKENS] = 30 * torch.eye(N_TOKENS)
        unembed[NOISE : NOISE + 2, FIRST + N_TOKENS :] = 0.3 * rand(2, 2)
        model.lm_head.weight.copy_(_zero_sum(unembed).T)
    return model


class PlantedTask(Task):
    """The planted induction task as a Foresight task (words t0..t7; the two corruptions of
    the module docstring alternate)."""

    name = "planted"

    def _draws(self, n: int, seed: int) -> list[list[str]]:
        g = torch.Generator().manual_seed(seed)
        return [[WORDS[i] for i in torch.randperm(N_TOKENS, generator=g)[:7].tolist()] for _ in range(n)]

    def attribution_pairs(self, n: int, seed: int = 0) -> list[AttributionPair]:
        """n pairs: even ones corrupt the first A (wrong: a word not in the prompt), odd ones B."""
        pairs = []
        for i, (x0, a, b, x3, x4, new, other) in enumerate(self._draws(n, seed)):
            clean = [x0, a, b, x3, x4, a]
            bad = list(clean)
            bad[1 + i % 2] = new
            pairs.append(AttributionPair(" ".join(clean), " ".join(bad), b, other if i % 2 == 0 else new))
        return pairs

    def eval_examples(self, n: int, seed: int = 0) -> list[Example]:
        """n prompts [x0, A, B, x3, x4, A] with answer B."""
        return [
            Example(" ".join([x0, a, b, x3, x4, a]), b) for x0, a, b, x3, x4, _, _ in self._draws(n, seed + 1)
        ]

    def sft_examples(self, n: int, seed: int = 0) -> list[Example]:
        """The same distribution as `eval_examples`, from another seed."""
        return self.eval_examples(n, seed + 1000)


def planted_tokenizer():  # noqa: ANN201
    """The word-level tokenizer of the planted model (<bos> first, so prompts are 7 tokens)."""
    return build_tokenizer(WORDS)


def planted_pairs(n: int, seed: int = 0) -> PairBatch:
    """n encoded pairs of `PlantedTask`."""
    return encode_pairs(planted_tokenizer(), PlantedTask().attribution_pairs(n, seed))
