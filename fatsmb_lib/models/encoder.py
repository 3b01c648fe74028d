"""The Multi-Behavior AutoEncoder (MBAE) of FatsMB (paper Section 3.1, Appendix C; Algorithm 1,
stage 1): a Transformer encoder whose attention sees behavior-aware rotary positions, and an MLP
decoder scored against the tied item embeddings, trained with the Cloze task.

The paper's equations, in the order the code implements them::

    Eq. 13 (App. C, 25-30)  f'(q, a, m) = h(a)·f(q, m), h(a) real      BaRoPE
    Eq. 11                  f(q, m) = q·e^{imθ}, θ_i = base^(−2i/d_k)   MultiHeadSelfAttention.project
                                                                        (kernels.rope_tables, rotate_pairs)
    Eq. 8                   head_i = softmax(q_i k_iᵀ / sqrt(d_k)) v_i  MultiHeadSelfAttention
    Eq. 7                   MultiHead = Concat(head_1..head_h) W^O      MultiHeadSelfAttention
    (pre-LN block)          x + Attn(LN(x)), then x + FFN(LN(x))        TransformerBlock
    Eq. 9                   h_i = e_v + e_b + e_p                       SequenceEncoder.embed
    Eq. 14                  q_ψ(v | z) = softmax(MLP(z)·Eᵀ + bias)      Decoder, MBAE.decode
    Eq. 14, Alg. 1 l. 3-15  the Cloze loss at masked positions          MBAE.loss
    Sec. 3.1, Alg. 2 l. 1   z_b and z_∅ at a [mask]                     MBAE.latents, .behavior_agnostic

Symbols: d_k ↔ ``d_head``, h (heads) ↔ ``n_heads``, z_∅ ↔ ``z_null``, E ↔ the tied item table
(``contract.item_weight``).

Shapes: B batch, L sequence length, D model width (d), H heads, N items, n_behaviors
behaviors. Ids: items 1..N (0 padding, N+1 [mask]); behaviors 1..n_behaviors (0 padding,
n_behaviors+1 [mask]). Sequences are left-padded: the newest token is at L-1. Rotation pairs
are half-split: coordinate i of a head is paired with coordinate i + d_head/2.

Speed: the rotation, the dropout and the Cloze loss run through ``kernels`` (each tested
against its plain form), and BaRoPE's MLP runs on the behavior table, not on every position.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .contract import init_weights, item_weight, masked_cross_entropy
from .kernels import FastDropout, rope_tables, rotate_pairs

POSITIONS = ("ape", "rope", "barope")


# ---------------------------------------------------------------------------------------------
# Blocks: BaRoPE (Eq. 13), attention (Eqs. 7-8, 11), the Transformer block
# ---------------------------------------------------------------------------------------------
class BaRoPE(nn.Module):
    """Behavior-aware magnitudes h(b) of BaRoPE: q' = h(b_q)·RoPE(q), k' = h(b_k)·RoPE(k) (Eq. 13).

    In the complex form of Appendix C (Eqs. 25-29) h(a) is a real magnitude of each complex
    coordinate, so we output ONE real value per rotation pair per head (d_head/2 per head) and
    repeat it over the pair's two coordinates. A real scalar commutes with the rotation, hence
    <f'(q,a,m), f'(k,b,n)> = Σ_pairs h(a)h(b)·g(q, k, m−n): positions enter only through m−n,
    exactly (Eq. 30). h = 1 + MLP(e_b) with the last layer zero-initialised: BaRoPE starts as RoPE.
    """

    def __init__(self, n_behaviors: int, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads, self.d_half = n_heads, d_model // n_heads // 2
        # its own behavior table: padding 0, behaviors 1..n_behaviors, [mask] n_behaviors+1
        self.behavior_embedding = nn.Embedding(n_behaviors + 2, d_model, padding_idx=0)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, n_heads * self.d_half)
        )
        self.zero_init_()

    def zero_init_(self) -> None:
        """Zero the MLP's last layer so that h ≡ 1 (BaRoPE == RoPE at initialisation)."""
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def pair_scale_table(self) -> torch.Tensor:
        """h(b) per rotation pair of every behavior id (padding, 1..n_behaviors, [mask]):
        (n_behaviors+2, H, d_head/2).

        h depends on the behavior id alone, so the MLP runs on these few rows only and each
        position looks its row up (the same values as running it on every position).
        """
        weight = self.behavior_embedding.weight
        ids = torch.arange(weight.shape[0], device=weight.device)
        # the parameters' precision even under bf16 autocast: bf16 cannot hold 1 + 0.003
        h = 1.0 + self.mlp(self.behavior_embedding(ids)).to(weight.dtype)  # (n_behaviors+2, H*d_head/2)
        return h.view(-1, self.n_heads, self.d_half)

    def forward(self, behaviors: torch.Tensor, copies: int = 1) -> torch.Tensor:
        """h(b) on both coordinates of each rotation pair, heads side by side (the layout of q
        and k before the heads are split), the whole block repeated ``copies`` times (the
        attention's q and k, side by side, share h): (B, L) -> (B, L, copies·H·d_head).

        The table is widened before the lookup, so no (B, L, ·) tensor is ever concatenated.
        """
        table = self.pair_scale_table()  # (n_behaviors+2, H, d_head/2)
        n, H, half = table.shape
        wide = table[:, None, :, None, :].expand(n, copies, H, 2, half)  # pair i -> i, i + d_head/2
        return F.embedding(behaviors, wide.flatten(1))


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention (Eqs. 7-8) with APE, RoPE or BaRoPE positions.

    APE lives in the embedding layer (Eq. 9); here RoPE/BaRoPE rotate q and k (v untouched,
    Algorithm 1 line 11). Keys at padded positions (``key_padding_mask`` True) are never
    attended; every query may attend to itself, so a fully padded row gives finite outputs and
    a padded query only sees itself. ``causal=True`` hides later keys (SASRec).

    NOTE: no dropout on the attention probabilities: on CPU it forces the slow math path of
    scaled_dot_product_attention (1.7x slower fwd+bwd per layer at (256, 2, 50, 32),
    measured); the blocks keep dropout on their residual branches and the embeddings, as the
    paper's "dropout 0.1".
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        rope_base: float,
        position: str = "barope",
        n_behaviors: int = 0,
        causal: bool = False,
    ):
        super().__init__()
        assert d_model % n_heads == 0, (
            f"d_model={d_model} must be divisible by n_heads={n_heads}; change one of them"
        )
        assert position in POSITIONS, f"position={position!r}; choose one of {POSITIONS}"
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.position, self.causal, self.rope_base = position, causal, rope_base
        self.qkv = nn.Linear(d_model, 3 * d_model)  # W^Q, W^K, W^V of all heads at once
        self.out = nn.Linear(d_model, d_model)  # W^O
        self.barope = BaRoPE(n_behaviors, d_model, n_heads) if position == "barope" else None

    def project(
        self, x: torch.Tensor, behaviors: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v of every head, each (B, H, L, d_head), from x (B, L, D): q and k rotated by
        their positions (Eq. 11) and, with BaRoPE, scaled by h of their behaviors (Eq. 13)."""
        B, L, D = x.shape
        H, d_head = self.n_heads, self.d_head
        W, b = self.qkv.weight, self.qkv.bias  # rows: W^Q, W^K, W^V
        qk, v = F.linear(x, W[: 2 * D], b[: 2 * D]), F.linear(x, W[2 * D :], b[2 * D :])  # (B, L, 2D), (B, L, D)
        if x.device.type == "cpu":  # NOTE: attention in fp32 on CPU, even under bf16 autocast:
            qk, v = qk.to(x.dtype), v.to(x.dtype)  # bf16 flash attention's backward is ~7x slower
        if self.position != "ape":  # all heads of q and k side by side
            cos, sin = rope_tables(L, 2 * H, d_head, self.rope_base, x.device, qk.dtype)  # (L, 2D)
            qk = rotate_pairs(qk, cos, sin, 2 * H)  # Eq. 11
        if self.barope is not None:  # Eq. 13: h(b) scales both coordinates of each pair
            qk = self.barope(behaviors, copies=2) * qk  # (B, L, 2D)
        q, k = qk.view(B, L, 2, H, d_head).unbind(2)  # (B, L, H, d_head) each
        q, k, v = (t.view(B, L, H, d_head).transpose(1, 2) for t in (q, k, v))  # (B, H, L, d_head)
        return q, k, v

    def allowed(self, key_padding_mask: torch.Tensor) -> torch.Tensor:
        """Which keys each query may attend: (B, 1, L, L) bool from key_padding_mask (B, L)."""
        L = key_padding_mask.shape[1]
        allowed = ~key_padding_mask[:, None, None, :]  # (B, 1, 1, L) real keys
        if self.causal:
            allowed = allowed & torch.ones(L, L, dtype=torch.bool, device=allowed.device).tril()
        return allowed | torch.eye(L, dtype=torch.bool, device=allowed.device)  # (B, 1, L, L)

    def forward(
        self, x: torch.Tensor, behaviors: torch.Tensor | None, key_padding_mask: torch.Tensor
    ) -> torch.Tensor:
        """x (B, L, D), behaviors (B, L) (used by BaRoPE only), key_padding_mask (B, L) True at
        padding -> (B, L, D). Eq. 8 by PyTorch's fused attention."""
        B, L, D = x.shape
        q, k, v = self.project(x, behaviors)  # (B, H, L, d_head) each
        with torch.autocast("cpu", enabled=False):  # see project's NOTE; CUDA unaffected
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=self.allowed(key_padding_mask))
        y = y.transpose(1, 2).reshape(B, L, D)  # Concat(head_1..head_h), Eq. 7
        return self.out(y)

    def attention_weights(
        self, x: torch.Tensor, behaviors: torch.Tensor | None, key_padding_mask: torch.Tensor
    ) -> torch.Tensor:
        """softmax(q kᵀ / sqrt(d_k)) of Eq. 8, written out (the fused forward never forms it):
        (B, H, L, L), each row summing to 1 over the keys it may attend."""
        q, k, _ = self.project(x, behaviors)  # (B, H, L, d_head)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)  # (B, H, L, L)
        return scores.masked_fill(~self.allowed(key_padding_mask), float("-inf")).softmax(dim=-1)


class TransformerBlock(nn.Module):
    """Pre-LN Transformer block: x + Attn(LN(x)), then x + FFN(LN(x)) (FFN width 4·D, GELU).

    NOTE: BERT4Rec (and the paper's Eq. 7-8 Transformer) use post-LN; we use pre-LN (nanoGPT)
    because it trains stably at the paper's lr 2e-3 without a warm-up schedule.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float, **attention_kwargs):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = MultiHeadSelfAttention(d_model, n_heads, **attention_kwargs)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model)
        )
        self.drop = FastDropout(dropout)

    def forward(
        self, x: torch.Tensor, behaviors: torch.Tensor | None, key_padding_mask: torch.Tensor
    ) -> torch.Tensor:
        """x (B, L, D) -> (B, L, D)."""
        x = self.drop.add(x, self.attn(self.ln1(x), behaviors, key_padding_mask))  # x + dropout(a)
        return self.drop.add(x, self.ffn(self.ln2(x)))


# ---------------------------------------------------------------------------------------------
# Config and models
# ---------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class EncoderConfig:
    """Sizes of the sequence encoder, built by ``Profile.config`` (the profile owns the
    values: paper l = 2, d = 64, 2 heads, L = 50). ``use_behavior`` and ``causal`` say which
    model this is (BERT4Rec and SASRec switch them), not hyperparameters."""

    n_items: int
    n_behaviors: int
    d_model: int
    n_heads: int
    n_layers: int
    dropout: float
    max_len: int
    position: str  # "ape" | "rope" | "barope" (Table 4 ablation)
    rope_base: float
    use_behavior: bool = True  # False: behaviors ignored entirely (BERT4Rec)
    causal: bool = False  # True: left-to-right attention (SASRec)

    def __post_init__(self):
        assert self.position in POSITIONS, f"position={self.position!r}; choose one of {POSITIONS}"
        assert self.d_model % self.n_heads == 0, (
            f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}; change one of them"
        )
        if self.position != "ape":
            assert (self.d_model // self.n_heads) % 2 == 0, (
                f"rotary positions need an even head width, got d_model/n_heads="
                f"{self.d_model // self.n_heads}; pick d_model = 2·k·n_heads"
            )
        assert self.use_behavior or self.position != "barope", (
            "position='barope' needs behaviors; set use_behavior=True or use 'rope'/'ape'"
        )


class SequenceEncoder(nn.Module):
    """Embedding layer (Eq. 9) + ``n_layers`` Transformer blocks + a final LayerNorm.

    APE positions count from the right end (the newest token always has position max_len−1),
    matching left padding; RoPE/BaRoPE use column indices (only differences matter, Eq. 10).
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        c = self.config = config
        self.item_embedding = nn.Embedding(c.n_items + 2, c.d_model, padding_idx=0)  # 0 pad, N+1 [mask]
        self.behavior_embedding = (
            nn.Embedding(c.n_behaviors + 2, c.d_model, padding_idx=0) if c.use_behavior else None
        )
        self.position_embedding = nn.Embedding(c.max_len, c.d_model) if c.position == "ape" else None
        self.drop = FastDropout(c.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(
                c.d_model, c.n_heads, c.dropout, position=c.position,
                n_behaviors=c.n_behaviors, causal=c.causal, rope_base=c.rope_base,
            )
            for _ in range(c.n_layers)
        )
        self.ln_f = nn.LayerNorm(c.d_model)
        self.apply(init_weights)
        for m in self.modules():  # the global init above overwrote the zero last layer
            if isinstance(m, BaRoPE):
                m.zero_init_()

    def embed(self, items: torch.Tensor, behaviors: torch.Tensor | None) -> torch.Tensor:
        """h_i = e_v + e_b + e_p (Eq. 9): (B, L) ids -> (B, L, D); e_p for APE only."""
        L = items.shape[1]
        x = self.item_embedding(items)  # (B, L, D)
        if self.behavior_embedding is not None:
            x = x + self.behavior_embedding(behaviors)
        if self.position_embedding is not None:
            assert L <= self.config.max_len, (
                f"sequence length {L} > max_len={self.config.max_len}; raise max_len or truncate"
            )
            p = torch.arange(self.config.max_len - L, self.config.max_len, device=items.device)
            x = x + self.position_embedding(p)  # (L, D) broadcast over B
        return x

    def forward(self, items: torch.Tensor, behaviors: torch.Tensor | None) -> torch.Tensor:
        """items, behaviors (B, L) -> hidden states (B, L, D)."""
        if not self.config.use_behavior:
            behaviors = None  # BERT4Rec / SASRec: behavior ids never reach the network
        pad = items == 0  # (B, L)
        x = self.drop(self.embed(items, behaviors))  # (B, L, D)
        for block in self.blocks:
            x = block(x, behaviors, pad)
        return self.ln_f(x)

    def attention_weights(
        self, items: torch.Tensor, behaviors: torch.Tensor | None
    ) -> list[torch.Tensor]:
        """The attention weights of every layer, each (B, H, L, L), on the way through the
        encoder (the forward pass, with each layer's weights written out beside it)."""
        if not self.config.use_behavior:
            behaviors = None
        pad = items == 0  # (B, L)
        x = self.drop(self.embed(items, behaviors))  # (B, L, D)
        weights = []
        for block in self.blocks:
            weights.append(block.attn.attention_weights(block.ln1(x), behaviors, pad))
            x = block(x, behaviors, pad)
        return weights


class Decoder(nn.Module):
    """q_ψ of Eq. 14: MLP into item space (Linear → GELU → LayerNorm) scored against the tied
    item embeddings (ids 1..N), plus a per-item output bias. The item table is passed in, so the
    decoder's own parameters are exactly MLP + bias (fine-tuned alone in stage 3)."""

    def __init__(self, d_model: int, n_items: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.LayerNorm(d_model))
        self.bias = nn.Parameter(torch.zeros(n_items))

    def forward(self, z: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """z (..., D), items (N, D) the tied table -> logits (..., N)."""
        return self.mlp(z) @ items.T + self.bias


@dataclass(frozen=True)
class BehaviorQueryConfig:
    """Sizes of :class:`BehaviorQuery` (a departure from the paper, off by default)."""

    d_model: int
    n_behaviors: int


class BehaviorQuery(nn.Module):
    """The behavior of each position added at the output, as the behavior-aware SASRec adds
    the target behavior at its query: q = h + MLP([h; e(b)]).

    NOTE: a departure from the paper, whose MBAE lets the target behavior in only through the
    [mask] token's input embedding (Eq. 9) and BaRoPE. Here the behavior of every position
    (the target behavior at a [mask] with its behavior visible, [mask] for z_∅) also reaches
    the output directly. The last layer starts at zero, so the model starts as the paper's.
    """

    def __init__(self, config: BehaviorQueryConfig):
        super().__init__()
        D = config.d_model
        # its own behavior table: padding 0, behaviors 1..n_behaviors, [mask] n_behaviors+1
        self.embedding = nn.Embedding(config.n_behaviors + 2, D, padding_idx=0)
        self.mlp = nn.Sequential(nn.Linear(2 * D, D), nn.GELU(), nn.Linear(D, D))
        self.apply(init_weights)
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, h: torch.Tensor, behaviors: torch.Tensor) -> torch.Tensor:
        """h (B, L, D), behaviors (B, L) -> h + MLP([h; e(b)]) (B, L, D)."""
        return h + self.mlp(torch.cat([h, self.embedding(behaviors)], dim=-1))


class MBAE(nn.Module):
    """Multi-Behavior AutoEncoder (Section 3.1): Transformer encoder with BaRoPE + MLP decoder,
    trained with the Cloze task (Eq. 14, Algorithm 1 lines 3-15).

    NOTE: the item table of the decoder is tied to the encoder's item embedding (BERT4Rec); in
    stage 3 only the decoder's MLP and bias are fine-tuned, the tied table stays frozen.
    """

    def __init__(self, config: EncoderConfig, query: BehaviorQueryConfig | None = None):
        super().__init__()
        self.config = config
        self.encoder = SequenceEncoder(config)
        self.decoder = Decoder(config.d_model, config.n_items)
        self.decoder.apply(init_weights)
        self.query = BehaviorQuery(query) if query is not None else None  # a departure

    @property
    def mask_item(self) -> int:
        return self.config.n_items + 1

    @property
    def mask_behavior(self) -> int:
        return self.config.n_behaviors + 1

    def encode(self, items: torch.Tensor, behaviors: torch.Tensor) -> torch.Tensor:
        """Hidden states h^l (B, L, D) of sequences items, behaviors (B, L) (with the behavior
        query, :class:`BehaviorQuery`, when the model has one)."""
        h = self.encoder(items, behaviors)  # (B, L, D)
        return h if self.query is None else self.query(h, behaviors)

    def attention_weights(self, items: torch.Tensor, behaviors: torch.Tensor) -> list[torch.Tensor]:
        """The attention weights (B, H, L, L) of every layer of the encoder (Eq. 8)."""
        return self.encoder.attention_weights(items, behaviors)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder q_ψ: z (..., D) -> logits (..., N) over all items; column j is item id j+1."""
        return self.decoder(z, item_weight(self.encoder.item_embedding))

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cloze loss (Eq. 14) on a Cloze batch: softmax cross-entropy over all N items at
        positions with targets > 0, averaged over them.

        Positions whose behavior is masked give z_∅, the others z_b; both are trained
        (Algorithm 1 lines 13-15). Only masked rows are decoded. A batch without masked
        positions gives 0 (still connected to the graph).
        """
        h = self.encode(batch["items"], batch["behaviors"])  # (B, L, D)
        return masked_cross_entropy(h, batch["targets"], item_weight(self.encoder.item_embedding),
                                    query=self.decoder.mlp, bias=self.decoder.bias)

    def _last_behavior(self, behaviors: torch.Tensor, value: torch.Tensor | int) -> torch.Tensor:
        """A copy of ``behaviors`` (B, L) whose last column (the [mask] item's) is ``value``."""
        out = behaviors.clone()
        out[:, -1] = value
        return out

    def behavior_agnostic(self, items: torch.Tensor, behaviors: torch.Tensor) -> torch.Tensor:
        """z_∅ (B, D): the output at the last column of a prefix batch (last item = [mask]) with
        that column's behavior replaced by [mask] (Algorithm 1 line 18, Algorithm 2 line 1)."""
        h = self.encode(items, self._last_behavior(behaviors, self.mask_behavior))  # (B, L, D)
        return h[:, -1].contiguous()  # a copy: a kept view would keep all of h alive

    def latents(
        self, items: torch.Tensor, behaviors: torch.Tensor, target_behaviors: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_b, z_∅) at the last column of a prefix batch (last item = [mask]), each (B, D).

        z_b: target behavior visible at the last column; z_∅ as in :meth:`behavior_agnostic`.
        One encoder pass over both variants stacked along the batch dimension.
        """
        B = items.shape[0]
        variants = torch.cat([self._last_behavior(behaviors, target_behaviors),
                              self._last_behavior(behaviors, self.mask_behavior)])  # (2B, L)
        h = self.encode(torch.cat([items, items]), variants)  # (2B, L, D)
        # a copy of the last column: callers keep the latents of many batches (prefix_latents),
        # and a view would keep each batch's whole (2B, L, D) output alive (~500 MiB on ml100k)
        z = h[:, -1].contiguous()  # (2B, D)
        return z[:B], z[B:]

    def latents_at(
        self, items: torch.Tensor, behaviors: torch.Tensor, positions_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z_b, z_∅, target items, target behaviors) at Cloze-masked positions, each (M, ...).

        ``items``/``behaviors`` (B, L) are the ORIGINAL (unmasked) sequences and
        ``positions_mask`` (B, L) bool the positions to mask. There the item becomes [mask];
        the behavior stays visible for z_b and becomes [mask] for z_∅ (at all selected
        positions of the row at once). One stacked encoder pass.
        """
        assert not (positions_mask & (items == 0)).any(), (
            "positions_mask selects padded positions; AND it with items > 0"
        )
        B = items.shape[0]
        masked_items = items.masked_fill(positions_mask, self.mask_item)
        b_null = behaviors.masked_fill(positions_mask, self.mask_behavior)
        h = self.encode(torch.cat([masked_items, masked_items]), torch.cat([behaviors, b_null]))  # (2B, L, D)
        return h[:B][positions_mask], h[B:][positions_mask], items[positions_mask], behaviors[positions_mask]

    def score_all(self, batch: dict[str, torch.Tensor],
                  generator: torch.Generator | None = None) -> torch.Tensor:
        """Scores (B, N) of all items for a prefix batch: decode the output at the [mask] column,
        whose behavior is the target behavior (stage-1 prediction, i.e. decode(z_b)).
        Deterministic: ``generator`` is accepted for the shared contract and unused."""
        h = self.encode(batch["items"], batch["behaviors"])  # (B, L, D)
        return self.decode(h[:, -1])

    @torch.no_grad()
    def attention_maps(self, items: torch.Tensor, behaviors: torch.Tensor) -> torch.Tensor:
        """Attention weights of ONE sequence (L,) averaged over layers and heads, cropped to its
        real (non-padded) positions: (L_real, L_real) (Figure 5). Runs in eval mode."""
        was_training = self.training
        self.eval()
        items, behaviors = items.reshape(1, -1), behaviors.reshape(1, -1)
        weights = self.attention_weights(items, behaviors)  # per layer (1, H, L, L)
        self.train(was_training)
        mean = torch.stack(weights).mean(dim=(0, 2))[0]  # (L, L): mean over layers and heads
        real = items[0] > 0
        return mean[real][:, real]
