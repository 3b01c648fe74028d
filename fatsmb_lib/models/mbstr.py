"""MB-STR, the Multi-Behavior Sequential Transformer Recommender (Yuan et al., SIGIR 2022),
rebuilt from the paper's description of its three parts:

- **MB-Trans**, a Transformer layer whose attention is behavior-aware: each token is projected
  to q, k, v with the matrices of ITS behavior, the score of a pair (i, j) goes through a
  bilinear map of the behavior pair (b_i, b_j), and the feed-forward network is
  behavior-specific too;
- **MB-SPG**, the multi-behavior sequential pattern generator: a learned relative-position
  bias per head, indexed by the behavior pair (b_i, b_j) and the bucketed distance i − j;
- **BA-Pred**, the behavior-aware prediction head: a mixture of shared and behavior-specific
  experts gated by the target behavior (CGC/PLE), scored against the tied item table.

Trained with the Cloze objective: items are masked, the masked position KEEPS its behavior,
and the head predicts the item under that behavior. At inference the [mask] column carries
the target behavior, so the same head answers "which item, under behavior b?".

Symbol map (code ↔ the description above)::

    BehaviorLinear.weight[b-1]        W_b        projection of a token of behavior b
    score_basis[m], value_basis[m]    W^m        bases of the pair maps, per head
    score_mix[p], value_mix[p]        α_{b_i b_j} mixture of the bases for pair p = (b_i, b_j)
    PairPositionBias.table[p, k, h]   β^h_{b_i b_j}(k), k = bucket(i − j)
    head experts / gates              BA-Pred (``fatsmb_lib.models.denoiser.BehaviorMoE``)

    s_ij = q_i (Σ_m α^m_{b_i b_j} W^m) k_jᵀ / sqrt(d_k) + β_{b_i b_j}(bucket(i − j))
    o_i  = Σ_j softmax_j(s_ij) (Σ_m α'^m_{b_i b_j} W'^m)ᵀ v_j

Shapes: B batch, L sequence length, D model width, H heads, d_k = D/H, N items,
n_behaviors behaviors (n_b). Ids: items 1..N (0 padding, N+1 [mask]); behaviors 1..n_b
(0 padding). Sequences are left-padded.

NOTE: the library's other Transformers are pre-LN (see ``encoder.TransformerBlock``); we use
pre-LN here too, where the authors' code is post-LN.
NOTE: no absolute positions and no behavior embedding on the input (as the authors' code):
order enters only through the relative bias, behavior only through the behavior-specific
weights.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .contract import init_weights, item_weight, masked_cross_entropy
from .denoiser import BehaviorMoE


# ---------------------------------------------------------------------------------------------
# Small blocks
# ---------------------------------------------------------------------------------------------
def relative_buckets(L: int, n_buckets: int, max_distance: int, device=None) -> torch.Tensor:
    """Bucket of the signed distance d = i − j for every (query i, key j): (L, L) long.

    Half of the buckets hold keys at or before the query (d ≥ 0), half keys after it (d < 0).
    Within a half of size n/2: exact buckets for |d| < n/4, then logarithmically wider ones
    up to ``max_distance``; farther distances share the last bucket.
    """
    assert n_buckets % 4 == 0, f"n_buckets={n_buckets} must be a multiple of 4 (two halves, exact + log)"
    half = n_buckets // 2
    exact = half // 2
    pos = torch.arange(L, device=device)
    d = pos[:, None] - pos[None, :]  # (L, L) i − j
    a = d.abs()
    wide = exact + (torch.log(a.clamp(min=1).float() / exact) / math.log(max_distance / exact)
                    * (half - exact)).long()
    bucket = torch.where(a < exact, a, wide.clamp(max=half - 1))
    return bucket + half * (d < 0).long()


def behavior_pairs(behaviors: torch.Tensor, n_behaviors: int) -> torch.Tensor:
    """Pair index p = (b_i − 1)·n_b + (b_j − 1) of every (query i, key j): (B, L) -> (B, L, L).

    Padding (b = 0) is counted as behavior 1: padded keys are never attended and padded
    queries are never read, so their pair index does not matter.
    """
    b = (behaviors - 1).clamp(min=0)  # (B, L)
    return b[:, :, None] * n_behaviors + b[:, None, :]


class BehaviorLinear(nn.Module):
    """y = x W_b + c_b with the weights of each token's own behavior b; padding gives 0.

    Vectorised without gathering a weight per token: x is written into the block of its
    behavior of a (..., n_b·d_in) vector, zeros elsewhere, and multiplied by the stacked
    weights (n_b·d_in, d_out). W_b therefore gets gradient only through tokens of behavior b
    (exactly zero when b is absent from the batch).
    """

    def __init__(self, n_behaviors: int, d_in: int, d_out: int):
        super().__init__()
        self.n_behaviors = n_behaviors
        self.weight = nn.Parameter(nn.init.trunc_normal_(torch.empty(n_behaviors, d_in, d_out),
                                                         std=0.02, a=-0.04, b=0.04))
        self.bias = nn.Parameter(torch.zeros(n_behaviors, d_out))

    def forward(self, x: torch.Tensor, behaviors: torch.Tensor) -> torch.Tensor:
        """x (..., d_in), behaviors (...) ids 0..n_b -> (..., d_out)."""
        route = F.one_hot(behaviors, self.n_behaviors + 1)[..., 1:].to(x.dtype)  # (..., n_b)
        routed = (route[..., :, None] * x[..., None, :]).flatten(-2)  # (..., n_b·d_in)
        return routed @ self.weight.flatten(0, 1) + route @ self.bias


class PairPositionBias(nn.Module):
    """MB-SPG: a learned bias β^h_{b_i b_j}(bucket(i − j)) per head, added to attention logits.

    One table (n_b², n_buckets, H); the bias of a (query, key) pair depends on nothing but the
    two behaviors and the bucketed distance.
    """

    def __init__(self, n_behaviors: int, n_heads: int, n_buckets: int, max_distance: int):
        super().__init__()
        self.n_behaviors, self.n_buckets, self.max_distance = n_behaviors, n_buckets, max_distance
        self.table = nn.Parameter(torch.randn(n_behaviors**2, n_buckets, n_heads) * 0.02)

    def forward(self, behaviors: torch.Tensor) -> torch.Tensor:
        """behaviors (B, L) -> bias (B, H, L, L)."""
        L = behaviors.shape[1]
        bucket = relative_buckets(L, self.n_buckets, self.max_distance, behaviors.device)  # (L, L)
        pair = behavior_pairs(behaviors, self.n_behaviors)  # (B, L, L)
        return self.table[pair, bucket].permute(0, 3, 1, 2)  # (B, L, L, H) -> (B, H, L, L)


class MultiBehaviorAttention(nn.Module):
    """MB-Trans attention: behavior-specific q/k/v, behavior-pair bilinear scores and value
    maps, plus the behavior-pair relative bias (the equations in the module docstring).

    The pair map Σ_m α^m_{p} W^m mixes n_b bases per head with softmax weights α_p of the pair
    p, so n_b² pairs cost n_b matrices. It is applied without forming a matrix per pair:
    q_i W^m for every basis (B, H, L, n_b, d_k), then the n_b scores of each (i, j) are mixed
    with α_{p(i,j)}; on the value side Σ_j p_ij α'^m v_j first, then W'^m.

    NOTE: the bases start at the identity plus small noise and the mixture logits at N(0, 1)
    (the authors' code draws both from N(0, 1)): at initialisation the pair maps are close to
    the identity, i.e. plain attention, and different pairs still get different gradients.
    """

    def __init__(self, d_model: int, n_heads: int, n_behaviors: int, dropout: float,
                 n_buckets: int, max_distance: int):
        super().__init__()
        assert d_model % n_heads == 0, f"d_model={d_model} must be divisible by n_heads={n_heads}"
        H, dk, nb = n_heads, d_model // n_heads, n_behaviors
        self.n_heads, self.d_head, self.n_behaviors = H, dk, nb
        self.qkv = BehaviorLinear(nb, d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        eye = torch.eye(dk).expand(nb, H, dk, dk)
        self.score_basis = nn.Parameter(eye + 0.02 * torch.randn(nb, H, dk, dk))  # W^m
        self.value_basis = nn.Parameter(eye + 0.02 * torch.randn(nb, H, dk, dk))  # W'^m
        self.score_mix = nn.Parameter(torch.randn(nb * nb, nb, H))  # α logits per pair
        self.value_mix = nn.Parameter(torch.randn(nb * nb, nb, H))  # α' logits per pair
        self.position_bias = PairPositionBias(nb, H, n_buckets, max_distance)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, behaviors: torch.Tensor, key_padding_mask: torch.Tensor
                ) -> torch.Tensor:
        """x (B, L, D), behaviors (B, L), key_padding_mask (B, L) True at padding -> (B, L, D)."""
        B, L, D = x.shape
        q, k, v = self.qkv(x, behaviors).split(D, dim=-1)
        q, k, v = (t.view(B, L, self.n_heads, self.d_head).transpose(1, 2) for t in (q, k, v))  # (B, H, L, d_k)
        pair = behavior_pairs(behaviors, self.n_behaviors)  # (B, L, L)
        mix = self.score_mix.softmax(dim=1)[pair].permute(0, 4, 1, 2, 3)  # (B, H, L, L, n_b)
        qw = torch.einsum("bhid,mhde->bhime", q, self.score_basis)  # (B, H, L, n_b, d_k)
        per_basis = torch.einsum("bhime,bhje->bhijm", qw, k)  # (B, H, L, L, n_b)
        scores = (per_basis * mix).sum(-1) / math.sqrt(self.d_head) + self.position_bias(behaviors)
        allowed = ~key_padding_mask[:, None, None, :] | torch.eye(L, dtype=torch.bool, device=x.device)
        attn = self.drop(scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1))  # (B, H, L, L)
        value_mix = self.value_mix.softmax(dim=1)[pair].permute(0, 4, 1, 2, 3)  # (B, H, L, L, n_b)
        pooled = torch.einsum("bhijm,bhjd->bhimd", attn[..., None] * value_mix, v)  # (B, H, L, n_b, d_k)
        y = torch.einsum("bhimd,mhde->bhie", pooled, self.value_basis)  # (B, H, L, d_k)
        return self.out(y.transpose(1, 2).reshape(B, L, D))


class MBTransBlock(nn.Module):
    """Pre-LN MB-Trans layer: x + Attn(LN(x)), then x + FFN_b(LN(x)) with a behavior-specific
    feed-forward network (width 4·D, GELU)."""

    def __init__(self, d_model: int, n_heads: int, n_behaviors: int, dropout: float,
                 n_buckets: int, max_distance: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = MultiBehaviorAttention(d_model, n_heads, n_behaviors, dropout, n_buckets,
                                           max_distance)
        self.ffn_in = BehaviorLinear(n_behaviors, d_model, 4 * d_model)
        self.ffn_out = BehaviorLinear(n_behaviors, 4 * d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, behaviors: torch.Tensor, key_padding_mask: torch.Tensor
                ) -> torch.Tensor:
        """x (B, L, D) -> (B, L, D)."""
        x = x + self.drop(self.attn(self.ln1(x), behaviors, key_padding_mask))
        hidden = self.drop(F.gelu(self.ffn_in(self.ln2(x), behaviors)))  # (B, L, 4D)
        return x + self.drop(self.ffn_out(hidden, behaviors))


# ---------------------------------------------------------------------------------------------
# Config and model
# ---------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class MBSTRConfig:
    """Sizes of MB-STR, built by ``Profile.config`` (fields carry the profile's names).
    ``mbstr_buckets``/``mbstr_max_distance``: relative-distance buckets of MB-SPG (the authors
    use 32 buckets up to distance 40); ``mbstr_shared``/``mbstr_private``: experts of BA-Pred
    (the authors: 3 shared, 1 per behavior)."""

    n_items: int
    n_behaviors: int
    d_model: int
    n_heads: int
    n_layers: int
    dropout: float
    mbstr_buckets: int
    mbstr_max_distance: int
    mbstr_shared: int
    mbstr_private: int


class MBSTR(nn.Module):
    """Item embedding → MB-Trans layers → LayerNorm → BA-Pred head over all N items.

    BA-Pred: z = h + LN(MoE(h, b)), scores = z · E[1..N]^T, with MoE the CGC mixture of
    ``mbstr_shared`` shared and ``mbstr_private`` experts per behavior, gated per target
    behavior b.
    NOTE: the head's mixture is the library's ``BehaviorMoE`` (the one FatsMB's denoiser uses);
    its experts are two-layer MLPs (width D) where the authors' are single linear maps.
    """

    def __init__(self, config: MBSTRConfig):
        super().__init__()
        c = self.config = config
        D = c.d_model
        self.item_embedding = nn.Embedding(c.n_items + 2, D, padding_idx=0)  # 0 pad, N+1 [mask]
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            MBTransBlock(D, c.n_heads, c.n_behaviors, c.dropout, c.mbstr_buckets,
                         c.mbstr_max_distance)
            for _ in range(c.n_layers)
        )
        self.ln_f = nn.LayerNorm(D)
        self.head_moe = BehaviorMoE(D, D, c.n_behaviors, c.mbstr_shared, c.mbstr_private, c.dropout)
        self.head_ln = nn.LayerNorm(D)
        self.apply(init_weights)  # nn.Linear / nn.Embedding only: bases, mixtures, experts keep theirs

    def encode(self, items: torch.Tensor, behaviors: torch.Tensor) -> torch.Tensor:
        """items, behaviors (B, L) -> hidden states (B, L, D)."""
        assert int(behaviors.max()) <= self.config.n_behaviors, (
            "MB-STR keeps the behavior of a masked item visible: build Cloze batches with sigma=0"
        )
        pad = items == 0  # (B, L)
        x = self.drop(self.item_embedding(items))  # (B, L, D)
        for block in self.blocks:
            x = block(x, behaviors, pad)
        return self.ln_f(x)

    def target_query(self, h: torch.Tensor, target_behavior: torch.Tensor) -> torch.Tensor:
        """BA-Pred's query z = h + LN(MoE(h, b)): h (M, D) under target_behavior (M,) ids
        1..n_b (0: shared experts only) -> (M, D), scored against the tied item table."""
        return h + self.head_ln(self.head_moe(h, target_behavior))

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cloze loss: cross-entropy over all N items at the masked positions (targets > 0),
        each predicted under its own behavior, ``target_behaviors`` (visible in the input too)."""
        h = self.encode(batch["items"], batch["behaviors"])  # (B, L, D)
        return masked_cross_entropy(h, batch["targets"], item_weight(self.item_embedding),
                                    query=self.target_query, condition=batch["target_behaviors"])

    def score_all(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
                  ) -> torch.Tensor:
        """Scores (B, N) of a prefix batch: the [mask] column's state under the row's
        ``target_behavior`` (which that column carries). ``generator`` is unused."""
        h = self.encode(batch["items"], batch["behaviors"])  # (B, L, D)
        z = self.target_query(h[:, -1], batch["target_behavior"])  # (B, D)
        return z @ item_weight(self.item_embedding).T
