"""PBAT, the Personalized Behavior-Aware Transformer (Su et al., ACM MM 2023, "Personalized
Behavior-Aware Transformer for Multi-Behavior Sequential Recommendation"), rebuilt from the
paper's overview of its modules and, for the equations, its authors' released code
(TiliaceaeSU/PBAT), whose functions carry the paper's names (SAGP, TriSAGP, BSFFL).

Every entity is a Gaussian N(μ, diag Σ), not a vector: items, behaviors, users, positions and
the ordered behavior pairs. Two parts define the model:

- the **personalized behavior pattern generator**: a user's pattern of behavior b is the
  self-adaptive Gaussian product (SAGP) of the user's distribution and b's;
- the **behavior-aware collaboration extractor**: attention between Gaussians. The impact
  factor of a behavior pair (a, c) is minus the Wasserstein distance between the user's
  patterns of a and c; it scales the pair's relation distribution, which is fused (TriSAGP)
  into every query and key together with the position distribution; the attention score of
  (i, j) is minus the Wasserstein distance between the fused query and key.

Trained with the Cloze objective of BERT4Rec / MB-STR, whose codebase PBAT's derives from:
items are masked with probability ρ, the masked position KEEPS its behavior, and the item is
predicted under that behavior through the user's pattern for it (the authors' code: mask
probability 0.2, 0.3 on IJCAI). At inference the [mask] column carries the target behavior.

The equations, in the order the code applies them (``W2`` is the squared 2-Wasserstein
distance between diagonal Gaussians, which the authors' code computes)::

    (1)  N(μ, Σ) of id x:   μ = ELU(LN(E^μ[x])),  Σ = ELU(LN(E^Σ[x])) + 1      GaussianEmbedding
    (2)  W2(N1, N2)        = ‖μ1 − μ2‖² + ‖Σ1^½ − Σ2^½‖²                           wasserstein
    (3)  SAGP(N1, N2):  μ = (Σ1 μ2 + Σ2 μ1) / (Σ1 + Σ2),  Σ = 2 Σ1 Σ2 / (Σ1 + Σ2)   sagp
    (4)  P_ub   = SAGP(N(μ_u, Σ_u), N(W_ub μ_b, Σ_b))       personalized pattern of behavior b
    (5)  ω_uac  = −W2(P_ua, P_uc)                           behavioral collaboration impact
    (6)  r_uac  = N(ω_uac μ^r_ac, ELU(ω_uac Σ̃^r_ac) + 1)   relation of the ordered pair (a, c)
    (7)  q_i    = N(x^μ_i W^μ_q + b^μ_i U^μ_q, ELU(x^Σ_i W^Σ_q + b^Σ_i U^Σ_q) + 1), same for k, v
    (8)  TriSAGP(N1, N2, N3):  Σ = (Σ1⁻¹ + Σ2⁻¹ + Σ3⁻¹)⁻¹,  μ = Σ (Σ1⁻¹μ1 + Σ2⁻¹μ2 + Σ3⁻¹μ3)
         Q_ij   = TriSAGP(q_i, N(W_q1 μ^r, Σ^r)_{u b_i b_j}, N(W_q2 p^μ_i, p^Σ_i))
         K_ij   = TriSAGP(k_j, N(W_k1 μ^r, Σ^r)_{u b_i b_j}, N(W_k2 p^μ_j, p^Σ_j))
    (9)  s_ij   = −W2(Q_ij, K_ij) / sqrt(d_k),   A = softmax_j(s) over real keys
    (10) x^μ ← LN(x^μ + O^μ Σ_j A_ij v^μ_j),    x^Σ ← LN(x^Σ + O^Σ Σ_j A_ij² v^Σ_j)
    (11) x^μ ← F_{b_i}(x^μ),  x^Σ ← ELU(F_{b_i}(x^Σ)) + 1,  F_b(x) = LN_b(W2_b ELU(W1_b x))
    (12) h_i    = SAGP(x_i, N(W_P P^μ_{u b_i}, P^Σ_{u b_i}))  pattern-aware prediction
    (13) z^μ = ELU(W_z h^μ + c),  z^Σ = ELU(W_z h^Σ + c) + 1
    (14) score_v = −W2(z, N(E^μ_v, ELU(E^Σ_v) + 1))       tied item tables, all N items

Q_ij depends on j only through b_j, and K_ij on i only through b_i, so (8)-(9) never form an
(L, L) grid of Gaussians: ``BehaviorAwareAttention`` fuses each query with all n_b possible key
behaviors and each key with all n_b possible query behaviors, (B, H, L, n_b, d_k), multiplies
all of them in one (L·n_b, L·n_b) matmul per head and takes each pair's entry (b_j, b_i).

Symbol map (code ↔ equations)::

    items / behaviors / users / pairs / positions     E, b, u, (μ^r, Σ̃^r), p   (1)
    pattern_proj                                      W_ub                     (4)
    BehaviorAwareAttention.mean_qkv / cov_qkv         [W; U] of (7) for q, k, v
    relation_q / position_q / relation_k / position_k W_q1, W_q2, W_k1, W_k2  (8)
    mean_out / cov_out, ln                            O^μ, O^Σ and the LN of (10)
    BehaviorFFN                                       F_b                      (11)
    prediction_proj, head                             W_P, (W_z, c)            (12), (13)

Shapes: B batch, L sequence length, D model width, H heads, d_k = D/H, N items, n_b
behaviors. Ids: items 1..N (0 padding, N+1 [mask]); behaviors 1..n_b (0 padding); users
0..n_users-1 (row u+1 of the user tables; row 0 is the unknown user). Sequences are
left-padded.

NOTE: tied output table: (14) scores against the input item tables (``contract.item_weight``),
as the authors' head does. (14) is written as one linear form, −W2 = 2 z^μ·μ_v + 2 (z^Σ)^½ ·
Σ_v^½ − ‖μ_v‖² − Σ_k Σ_vk − (a row constant), so the Cloze loss goes through the library's
``masked_cross_entropy`` without forming (M, N) logits.
NOTE: the sign of (14): the authors' head feeds +W2 to the softmax (nearer = less likely,
which softmax turns into a dot product with a flipped query plus a +‖μ_v‖² item bias); we
score −W2, nearer = likelier, as their attention (9) does. And z^Σ gets the "+ 1" of every
other covariance (their head's ELU alone can go negative and is clamped before the root).
NOTE: one encoding (1) for every entity. The authors' code encodes positions without LN/ELU
(Σ = E^Σ + 1, clamped at 1e-24), the behaviors of (4) with a second ELU; we keep Σ > 0 by
construction everywhere.
NOTE: the relation (6) is indexed by the ordered pair (a, c) for any number of behaviors (the
authors' code hard-codes 4 behaviors, index 4a + c); the padding behavior of a padded token
counts as behavior 1 in the pair blocks: padded keys are never attended, padded queries never
read.
NOTE: the [mask] behavior is not an input: PBAT, like MB-STR, keeps a masked item's behavior
visible (Cloze batches with σ = 0).
NOTE: no user in the batch (a history from outside the data, ``evaluate.recommend``): the
unknown user, row 0 of the user tables (its embedding is 0, so its Gaussian is the LN bias
through (1)); training batches must name their users.
NOTE: post-LN blocks and an FFN without a residual (11), as in the authors' code; the library's
other Transformers are pre-LN.
NOTE: the protocol is the library's (leave-one-out, full ranking over all N items); the authors
rank the held-out item among 99 sampled negatives. Their training windows and optimiser:
``training.peers`` (``pbat_recipe``).

Standing on ml100k. The paper puts PBAT close to BERT4Rec on all three of its datasets; here,
under ``full``, it is far below: validation NDCG@10 0.042 (seed 0, ρ 0.3, the search's choice;
``reports/ml100k/peer_search.md``) against BERT4Rec's 0.068. We believe the gap is the training
rows, not the model. PBAT trains on its authors' windows, about 2,400 rows an epoch; BERT4Rec
here trains on a window ending at every item, about 98,000. On the paper's windows BERT4Rec
scored 0.048 ± 0.011 (``reports/ml100k/recipe_study.md``, ``default``, 2 seeds), and MB-STR, on
its authors' windows, 0.054 (``comparison.json``): PBAT below both, as the paper has it below
MB-STR on every dataset. Its mechanisms are tested in ``tests/test_peer_pbat.py``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .contract import init_weights, item_weight, masked_cross_entropy
from .mbstr import BehaviorLinear

EPS = 1e-12  # floor of a covariance before a division or a square root


# ---------------------------------------------------------------------------------------------
# Gaussian algebra (diagonal covariances, elementwise on the last axis)
# ---------------------------------------------------------------------------------------------
def wasserstein(mean1: torch.Tensor, cov1: torch.Tensor, mean2: torch.Tensor, cov2: torch.Tensor
                ) -> torch.Tensor:
    """Eq. (2): squared 2-Wasserstein distance of diagonal Gaussians, (..., D) -> (...)."""
    root1, root2 = cov1.clamp(min=EPS).sqrt(), cov2.clamp(min=EPS).sqrt()
    return ((mean1 - mean2) ** 2).sum(-1) + ((root1 - root2) ** 2).sum(-1)


def sagp(mean1: torch.Tensor, cov1: torch.Tensor, mean2: torch.Tensor, cov2: torch.Tensor
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (3): self-adaptive Gaussian production, each mean weighted by the OTHER covariance
    (the sharper distribution dominates); Σ is twice the product's, so SAGP(N, N) = N."""
    cov1, cov2 = cov1.clamp(min=EPS), cov2.clamp(min=EPS)
    total = cov1 + cov2
    return (cov1 * mean2 + cov2 * mean1) / total, 2 * cov1 * cov2 / total


def tri_sagp(means: tuple[torch.Tensor, ...], covs: tuple[torch.Tensor, ...]
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (8): product of three Gaussians, precision-weighted (broadcasting shapes)."""
    precisions = [1 / c.clamp(min=EPS) for c in covs]
    cov = 1 / (precisions[0] + precisions[1] + precisions[2])
    return cov * sum(p * m for p, m in zip(precisions, means)), cov


# ---------------------------------------------------------------------------------------------
# Small blocks
# ---------------------------------------------------------------------------------------------
class GaussianEmbedding(nn.Module):
    """Eq. (1): a mean table and a covariance table; id x -> (μ, Σ), each (..., D), Σ > 0."""

    def __init__(self, n: int, d_model: int, dropout: float, padding_idx: int | None = 0):
        super().__init__()
        self.mean = nn.Embedding(n, d_model, padding_idx=padding_idx)
        self.cov = nn.Embedding(n, d_model, padding_idx=padding_idx)
        self.mean_ln, self.cov_ln = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """ids (...) -> μ, Σ (..., D); None: every row of the tables, (n, D)."""
        mean = self.mean.weight if ids is None else self.mean(ids)
        cov = self.cov.weight if ids is None else self.cov(ids)
        return (F.elu(self.drop(self.mean_ln(mean))),
                F.elu(self.drop(self.cov_ln(cov))) + 1)


class BehaviorAwareAttention(nn.Module):
    """Fused behavior-aware attention, Eqs. (7)-(10): Gaussian q/k/v from the item's and the
    behavior's distributions, each (query, key) pair fused with its behavior relation and its
    positions, scored by minus their Wasserstein distance.

    Vectorised over pairs: the query of i fused for every possible key behavior c, Q_ic, and
    the key of j for every possible query behavior a, K_ja, (B, H, L, n_b, d_k). With
    Z = [μ, Σ^½] (2 d_k), W2(Q, K) = ‖Z_Q‖² + ‖Z_K‖² − 2 Z_Q·Z_K; the cross terms of all
    (i, c) against all (j, a) are one (L·n_b, 2d_k) × (2d_k, L·n_b) matmul per head, from which
    the pair (i, j) takes its entry (c, a) = (b_j, b_i), and the norms are picked likewise.
    """

    def __init__(self, d_model: int, n_heads: int, n_behaviors: int, dropout: float):
        super().__init__()
        assert d_model % n_heads == 0, f"d_model={d_model} must be divisible by n_heads={n_heads}"
        self.n_heads, self.d_head, self.n_behaviors = n_heads, d_model // n_heads, n_behaviors
        dk = self.d_head
        # (7): [x, b] -> q, k, v in one map per moment (no biases, as the authors')
        self.mean_qkv = nn.Linear(2 * d_model, 3 * d_model, bias=False)
        self.cov_qkv = nn.Linear(2 * d_model, 3 * d_model, bias=False)
        # (8): W_q1, W_q2, W_k1, W_k2 on each head's relation and position means
        self.relation_q, self.position_q = nn.Linear(dk, dk), nn.Linear(dk, dk)
        self.relation_k, self.position_k = nn.Linear(dk, dk), nn.Linear(dk, dk)
        self.mean_out, self.cov_out = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        self.ln = nn.LayerNorm(d_model)  # one LN for both moments (the authors')
        self.drop = nn.Dropout(dropout)

    def heads(self, t: torch.Tensor) -> torch.Tensor:
        """(B, ..., D) -> (B, H, ..., d_k)."""
        t = t.unflatten(-1, (self.n_heads, self.d_head))  # (B, ..., H, d_k)
        return t.movedim(-2, 1)

    def scores(self, x: tuple, b: tuple, relation: tuple, position: tuple,
               behaviors: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """Eqs. (7)-(9) before the softmax: s (B, H, L, L) and the values (v^μ, v^Σ), each
        (B, H, L, d_k).

        x, b: the tokens' item and behavior Gaussians, (μ, Σ) each (B, L, D); relation: r_u,
        (μ, Σ) each (B, n_b, n_b, D), [a, c] = (query behavior, key behavior); position:
        (μ, Σ) each (L, D); behaviors (B, L) ids 0..n_b.
        """
        B, L, D = x[0].shape
        H, dk, nb = self.n_heads, self.d_head, self.n_behaviors
        q_m, k_m, v_m = self.mean_qkv(torch.cat([x[0], b[0]], -1)).split(D, -1)
        covs = self.cov_qkv(torch.cat([x[1], b[1]], -1)).split(D, -1)
        q_c, k_c, v_c = (F.elu(t) + 1 for t in covs)  # (B, L, D) each, > 0
        row = torch.arange(B, device=behaviors.device)[:, None]  # (B, 1)
        own = (behaviors - 1).clamp(min=0)  # (B, L) the token's behavior index 0..n_b-1
        r_m, r_c = (t.unflatten(-1, (H, dk)) for t in relation)  # (B, n_b, n_b, H, d_k)

        def seen(t: torch.Tensor, side: int) -> torch.Tensor:
            """r[b_i, c] over c for query i (side 0), r[a, b_j] over a for key j (side 1):
            (B, n_b, n_b, H, d_k) -> (B, H, L, n_b, d_k)."""
            return (t if side == 0 else t.transpose(1, 2))[row, own].movedim(3, 1)

        pos_m, pos_c = (self.heads(t[None])[..., None, :] for t in position)  # (1, H, L, 1, d_k)
        fq_m, fq_c = tri_sagp(  # Q_ic: (B, H, L, n_b, d_k)
            (self.heads(q_m)[..., None, :], seen(self.relation_q(r_m), 0), self.position_q(pos_m)),
            (self.heads(q_c)[..., None, :], seen(r_c, 0), pos_c))
        fk_m, fk_c = tri_sagp(  # K_ja: (B, H, L, n_b, d_k)
            (self.heads(k_m)[..., None, :], seen(self.relation_k(r_m), 1), self.position_k(pos_m)),
            (self.heads(k_c)[..., None, :], seen(r_c, 1), pos_c))
        zq = torch.cat([fq_m, fq_c.clamp(min=EPS).sqrt()], -1)  # (B, H, L, n_b, 2d_k)
        zk = torch.cat([fk_m, fk_c.clamp(min=EPS).sqrt()], -1)  # (B, H, L, n_b, 2d_k)
        # every (query, key behavior) against every (key, query behavior), then the pair's entry
        grid = zq.flatten(2, 3) @ zk.flatten(2, 3).transpose(-1, -2)  # (B, H, L·n_b, L·n_b)
        j = torch.arange(L, device=behaviors.device)
        pick = own[:, None, :] * (L * nb) + j * nb + own[:, :, None]  # (B, L, L): (b_j, j, b_i)
        cross = grid.view(B, H, L, -1).gather(-1, pick[:, None].expand(B, H, L, L))  # (B, H, L, L)
        hot = F.one_hot(own, nb).float()[:, None]  # (B, 1, L, n_b)
        q_norm = (zq**2).sum(-1) @ hot.transpose(-1, -2)  # (B, H, L, L): ‖Z_Q[i, b_j]‖²
        k_norm = hot @ (zk**2).sum(-1).transpose(-1, -2)  # (B, H, L, L): ‖Z_K[j, b_i]‖²
        distance = q_norm + k_norm - 2 * cross  # (B, H, L, L) W2(Q_ij, K_ij)
        values = (self.heads(v_m), self.heads(v_c))  # (B, H, L, d_k) each
        return -distance / math.sqrt(self.d_head), values

    def forward(self, x: tuple, b: tuple, relation: tuple, position: tuple,
                behaviors: torch.Tensor, key_padding_mask: torch.Tensor) -> tuple:
        """Eqs. (7)-(10): x -> x, (μ, Σ) each (B, L, D); key_padding_mask (B, L) True at
        padding."""
        B, L, D = x[0].shape
        s, (v_m, v_c) = self.scores(x, b, relation, position, behaviors)
        allowed = ~key_padding_mask[:, None, None, :] | torch.eye(L, dtype=torch.bool,
                                                                  device=s.device)
        attn = self.drop(s.masked_fill(~allowed, float("-inf")).softmax(-1))  # (B, H, L, L)
        o_m = (attn @ v_m).transpose(1, 2).reshape(B, L, D)  # (B, L, D)
        o_c = (attn**2 @ v_c).transpose(1, 2).reshape(B, L, D)  # (B, L, D)
        return (self.ln(x[0] + self.drop(self.mean_out(o_m))),
                self.ln(x[1] + self.drop(self.cov_out(o_c))))


class BehaviorFFN(nn.Module):
    """Eq. (11)'s F_b(x) = LN_b(W2_b ELU(W1_b x)) with the weights and LayerNorm of each token's
    own behavior, 0 at padding.

    Tokens are grouped by behavior (a stable sort) into an (n_b, largest group, D) buffer and
    each group is multiplied by its own weights in one batched matmul: the cost is that of
    n_b · (largest group) tokens, not the n_b · (all tokens) of routing every token through
    every behavior's block (``mbstr.BehaviorLinear``, whose parameters these are).
    """

    def __init__(self, d_model: int, n_behaviors: int, dropout: float):
        super().__init__()
        self.w1 = BehaviorLinear(n_behaviors, d_model, 4 * d_model)
        self.w2 = BehaviorLinear(n_behaviors, 4 * d_model, d_model)
        self.ln_weight = nn.Parameter(torch.ones(n_behaviors, d_model))
        self.ln_bias = nn.Parameter(torch.zeros(n_behaviors, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, behaviors: torch.Tensor) -> torch.Tensor:
        """x (..., D), behaviors (...) ids 0..n_b -> (..., D)."""
        flat, b = x.reshape(-1, x.shape[-1]), behaviors.reshape(-1)  # (T, D), (T,)
        order = torch.argsort(b, stable=True)  # padding (0) first, then behavior by behavior
        counts = torch.bincount(b, minlength=self.ln_weight.shape[0] + 1)  # (n_b + 1,)
        real = order[int(counts[0]):]  # (T_real,) the real tokens, grouped
        group = b[real] - 1  # (T_real,) 0..n_b-1
        start = torch.cumsum(counts[1:], 0) - counts[1:]  # (n_b,)
        slot = torch.arange(len(real), device=x.device) - start[group]  # (T_real,)
        where = (group, slot)
        buffer = flat.new_zeros(len(start), int(counts[1:].max()), flat.shape[1])
        buffer = buffer.index_put(where, flat[real])  # (n_b, largest group, D)
        hidden = F.elu(torch.baddbmm(self.w1.bias[:, None], buffer, self.w1.weight))
        y = torch.baddbmm(self.w2.bias[:, None], self.drop(hidden), self.w2.weight)[where]
        y = F.layer_norm(y, y.shape[-1:]) * self.ln_weight[group] + self.ln_bias[group]
        return torch.zeros_like(flat).index_put((real,), y).view_as(x)  # (T_real, D) -> (..., D)


class PBATBlock(nn.Module):
    """One layer: behavior-aware attention (7)-(10), then the behavior-specific FFN on both
    moments (11)."""

    def __init__(self, d_model: int, n_heads: int, n_behaviors: int, dropout: float):
        super().__init__()
        self.attn = BehaviorAwareAttention(d_model, n_heads, n_behaviors, dropout)
        self.ffn = BehaviorFFN(d_model, n_behaviors, dropout)

    def forward(self, x: tuple, b: tuple, relation: tuple, position: tuple,
                behaviors: torch.Tensor, key_padding_mask: torch.Tensor) -> tuple:
        """(μ, Σ) each (B, L, D) -> the same."""
        mean, cov = self.attn(x, b, relation, position, behaviors, key_padding_mask)
        both = self.ffn(torch.stack([mean, cov]), behaviors)  # (2, B, L, D): one pass, F shared
        return both[0], F.elu(both[1]) + 1


# ---------------------------------------------------------------------------------------------
# Config and model
# ---------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class PBATConfig:
    """Sizes of PBAT, built by ``Profile.config`` (fields carry the profile's names) and the
    data's: ``n_users`` sizes the user tables (one Gaussian per user, plus the unknown user);
    ``max_len`` the position tables. The authors' own runs: d = 16, 2 layers, 2 heads, dropout
    0.1 (Yelp) or 0.2 (Retail, IJCAI)."""

    n_items: int
    n_behaviors: int
    n_users: int
    d_model: int
    n_heads: int
    n_layers: int
    dropout: float
    max_len: int


class PBAT(nn.Module):
    """Gaussian embeddings → personalized patterns (4)-(6) → PBAT blocks → pattern-aware
    Wasserstein head (12)-(14) over all N items (module docstring)."""

    def __init__(self, config: PBATConfig):
        super().__init__()
        c = self.config = config
        D, nb = c.d_model, c.n_behaviors
        self.items = GaussianEmbedding(c.n_items + 2, D, c.dropout)  # 0 pad, N+1 [mask]
        self.behaviors = GaussianEmbedding(nb + 1, D, c.dropout)  # 0 pad
        self.users = GaussianEmbedding(c.n_users + 1, D, c.dropout)  # 0 unknown, u+1 user u
        self.pairs = GaussianEmbedding(nb * nb, D, c.dropout, padding_idx=None)  # (a-1)·n_b + c-1
        self.positions = GaussianEmbedding(c.max_len, D, 0.0, padding_idx=None)
        self.pattern_proj = nn.Linear(D, D)  # W_ub (4)
        self.blocks = nn.ModuleList(PBATBlock(D, c.n_heads, nb, c.dropout)
                                    for _ in range(c.n_layers))
        self.prediction_proj = nn.Linear(D, D)  # W_P (12)
        self.head = nn.Linear(D, D)  # W_z, c (13)
        # N(0, 0.02) for the tables and the q/k/v maps, as the authors'; their other linear
        # maps keep PyTorch's default (uniform ±1/sqrt(fan_in)), and so do ours
        for module in self.modules():
            if isinstance(module, nn.Embedding):
                init_weights(module)
        for block in self.blocks:
            init_weights(block.attn.mean_qkv)
            init_weights(block.attn.cov_qkv)

    # ----------------------------------------------------------------- (4)-(6), per user
    def patterns(self, user: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. (4): P_ub for b = 1..n_b of each row's user, user (B,) table rows -> (μ, Σ)
        each (B, n_b, D)."""
        u_m, u_c = self.users(user)  # (B, D)
        b_m, b_c = self.behaviors(torch.arange(1, self.config.n_behaviors + 1, device=user.device))
        return sagp(u_m[:, None], u_c[:, None], self.pattern_proj(b_m)[None], b_c[None])

    def relations(self, pattern: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        """Eqs. (5)-(6): r_uac, (μ, Σ) each (B, n_b, n_b, D), [a, c] = (query behavior, key
        behavior), from the patterns (μ, Σ) each (B, n_b, D)."""
        nb = self.config.n_behaviors
        p_m, p_c = pattern
        omega = -wasserstein(p_m[:, :, None], p_c[:, :, None],
                             p_m[:, None], p_c[:, None])  # (B, n_b, n_b)
        r_m, r_c = self.pairs()  # (n_b², D): Σ̃^r = r_c − 1 (the authors scale it before the "+1")
        r_m, r_c = r_m.view(nb, nb, -1), (r_c - 1).view(nb, nb, -1)  # (n_b, n_b, D)
        return omega[..., None] * r_m, F.elu(omega[..., None] * r_c) + 1

    # ----------------------------------------------------------------- encoder
    def user_rows(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Rows of the user tables, (B,): user u -> u + 1; no ``user`` key -> 0 (unknown)."""
        if "user" in batch:
            return batch["user"].long() + 1
        return torch.zeros(len(batch["items"]), dtype=torch.long, device=batch["items"].device)

    def inputs(self, items: torch.Tensor, behaviors: torch.Tensor, user: torch.Tensor) -> dict:
        """What the blocks read: the tokens' item and behavior Gaussians ``x``, ``b`` ((μ, Σ)
        each (B, L, D)), the user's patterns ``pattern`` (4) ((μ, Σ) each (B, n_b, D)) and
        relations ``relation`` (5)-(6) ((μ, Σ) each (B, n_b, n_b, D)), the positions
        ``position`` ((μ, Σ) each (L, D), the newest last). items, behaviors (B, L); user (B,)
        rows of the user tables (:meth:`user_rows`)."""
        assert int(behaviors.max()) <= self.config.n_behaviors, (
            "PBAT keeps the behavior of a masked item visible: build Cloze batches with sigma=0"
        )
        L = items.shape[1]
        pattern = self.patterns(user)
        return {"x": self.items(items), "b": self.behaviors(behaviors), "pattern": pattern,
                "relation": self.relations(pattern),
                "position": self.positions(torch.arange(self.config.max_len - L,
                                                        self.config.max_len, device=items.device))}

    def encode(self, items: torch.Tensor, behaviors: torch.Tensor, user: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """items, behaviors (B, L), user (B,) table rows -> the pattern-aware prediction
        distribution h (12), (μ, Σ) each (B, L, D), at every position under its own behavior."""
        given = self.inputs(items, behaviors, user)
        x, pad = given["x"], items == 0  # (B, L, D) each, (B, L)
        for block in self.blocks:
            x = block(x, given["b"], given["relation"], given["position"], behaviors, pad)
        row = torch.arange(len(items), device=items.device)[:, None]  # (B, 1)
        own = (behaviors - 1).clamp(min=0)  # (B, L)
        p_m, p_c = (t[row, own] for t in given["pattern"])  # P_{u b_i}: (B, L, D) each
        return sagp(x[0], x[1], self.prediction_proj(p_m), p_c)

    # ----------------------------------------------------------------- head (13)-(14)
    def query(self, h: torch.Tensor) -> torch.Tensor:
        """Eq. (13) as the query of (14)'s linear form: h = [h^μ, h^Σ] (M, 2D) ->
        [2 z^μ, 2 (z^Σ)^½] (M, 2D)."""
        h_m, h_c = h.chunk(2, -1)
        z_m, z_c = F.elu(self.head(h_m)), F.elu(self.head(h_c)) + 1
        return torch.cat([2 * z_m, 2 * z_c.clamp(min=EPS).sqrt()], -1)

    def item_table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(14)'s tied table [μ_v, Σ_v^½] (N, 2D) and bias −‖μ_v‖² − Σ_k Σ_vk (N,), from the
        raw item tables (the authors' head reads them without the input's LN)."""
        mean = item_weight(self.items.mean)  # (N, D)
        cov = F.elu(item_weight(self.items.cov)) + 1  # (N, D)
        return torch.cat([mean, cov.sqrt()], -1), -(mean**2).sum(-1) - cov.sum(-1)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cloze loss: cross-entropy over all N items at the masked positions (targets > 0),
        each scored through its user's pattern of its own behavior (visible in the input).
        The batch must carry ``user`` (Cloze batches do)."""
        assert "user" in batch, "PBAT personalises per user: its Cloze batches must carry 'user'"
        h = self.encode(batch["items"], batch["behaviors"], self.user_rows(batch))
        table, bias = self.item_table()
        return masked_cross_entropy(torch.cat(h, -1), batch["targets"], table, query=self.query,
                                    bias=bias)

    def score_all(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
                  ) -> torch.Tensor:
        """Scores (B, N) of a prefix batch: −W2 (14) between the [mask] column's distribution,
        through the row's user's pattern of ``target_behavior`` (which that column carries), and
        every item. ``generator`` is unused."""
        h_m, h_c = self.encode(batch["items"], batch["behaviors"],
                               self.user_rows(batch))  # (B, L, D) each
        h = torch.cat([h_m[:, -1], h_c[:, -1]], -1)  # (B, 2D)
        table, bias = self.item_table()
        z = self.query(h)  # (B, 2D) = [2 z^μ, 2 (z^Σ)^½]
        row_constant = (z**2).sum(-1, keepdim=True) / 4  # ‖z^μ‖² + Σ_k z^Σ_k
        return z @ table.T + bias - row_constant
