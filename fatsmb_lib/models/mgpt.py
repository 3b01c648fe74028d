"""M-GPT, the Multi-Grained Preference enhanced Transformer (He, Liu, Li, Wang, Fu, Fu, Hong
and Yao, KDD 2025; arXiv:2411.12179, the FatsMB paper's [12]), rebuilt from the paper's
description and its authors' released code (github.com/hchchchchchchc/MGPT, a RecBole fork)
in two parts:

- the **interaction-level dependency extractor** (IDE): a fully connected graph over the
  sequence's interactions, an edge weighing item AND behavior of both ends, convolved K times
  so that each order k = 0..K-1 holds the dependencies of interactions k hops apart;
- the **multifaceted sequential pattern generator** (MSPG): a Transformer whose attention has
  three facets, mixed along the sequence: linear attention over the whole sequence, and
  multi-grained preference attention inside sessions at two grains (the sequence cut into
  ``mgpt_sessions`` and ``mgpt_fine_sessions`` sessions), where the queries are the user's
  preference over the last 1, 2, .., G interactions of each session.

Each order's representation runs through the same MSPG; every order predicts, the loss sums
their cross-entropies and the score of an item is its best order's (the authors'
``agg_method = "maxpooling"``).

The equations, in the order the code computes them (i, j interactions; ⊙ elementwise)::

    e_j = E[v_j],  b_j = E_b[β_j],  p_j = P[j]                     item, behavior, position
    A_ij  = σ(⟨e_i ⊙ b_i, e_j ⊙ b_j⟩) · r_i r_j                     IDE graph (r: real token)
    Â     = D^{-1/2} (A + I),  D = diag((A + I) 1)
    h⁰    = e + b,  h^k = LeakyReLU(Â (h^{k-1} W + c))              orders k = 1..K-1
    R_l1  = λ · Σ_ij A_ij                                           sparsity of the graph
  for each order, n_layers MSPG layers, x = h^k first:
    u     = LN(x + p)                                               global facet:
    y⁰_i  = LN(u_i + W_o Σ_j (φ(q_i)·φ(k_j)) v_j / sqrt(d_k)),  φ(z) = elu(z)/‖elu(z)‖
    c_g   = W_g (x_l + x_{l-1} + .. + x_{l-g+1}) + d_g,  g = 1..G   session facet (each grain),
    a_gj  = softmax_j(2 σ(q_g · k_j)),  q_g = W_q c_g, k_j = W_k x_j   sessions of l items,
    α_j   = softmax_j(2 (Σ_g a_gj^p)^{1/p})                         per head; the queries
    yˢ_j  = LN(x_j + W_o (α_j v_j)) + p_j,  v_j = W_v x_j           read the g newest items
    x'    = W_mix [y⁰; y^coarse; y^fine] + c_mix                    mixer over the 3L positions
    x     = LN(x' + W_2 GELU(W_1 x'))                               feed-forward
  prediction, at the positions with a target (training) or the [mask] column (ranking):
    loss  = Σ_k CE(x^k · E[1..N]^T, target) + R_l1,   score = max_k x^k · E[1..N]^T

Trained with the authors' objective, masked-item prediction (Cloze): items masked at random
(the profile's ρ; the authors' 0.2), their positions predicted over all items by full
softmax against the tied item table, summed over the orders, plus the ‖A‖₁ penalty.
Which windows it trains on is ``mgpt_recipe`` (``training.peers``).

Symbol map (code ↔ equations)::

    interaction_adjacency          A              InteractionGraph.gcn   W, c (all orders)
    normalize_adjacency            Â              GlobalAttention        y⁰, φ
    SessionAttention               a_gj, α_j, yˢ  query_weight[g-1]      W_g (bias: d_g)
    SessionAttention.lp            p (L_p pool)   MSPGLayer.mixer        W_mix, c_mix
    MGPTConfig.mgpt_l1             λ              MGPTConfig.mgpt_orders K

Shapes: B batch, L sequence length, D model width, H heads, d_k = D/H, N items, K orders,
s sessions of l items, G queries. Ids: items 1..N (0 padding, N+1 [mask]); behaviors 1..n_b
(0 padding, n_b+1 [mask]). Sequences are left-padded.

NOTE: the authors' masked positions carry no behavior (type 0), because their target is
always a purchase. Our protocol gives every row its target behavior, as MB-STR's does: by
default a masked position keeps its behavior (Cloze σ = 0) and the ranking [mask] column
carries the target behavior, so it enters the graph like any other. ``mgpt_hide_target``
restores the authors' choice (σ = 1, and the [mask] column's behavior is hidden at ranking).
NOTE: the authors' windows are one per user, L = 200, the target (last) item always masked
besides ρ; ours are the Cloze recipe's (``mgpt_recipe``), L = 50: sessions are ceil(L/s)
long (13 and 5 for their s = 4 and 10, where theirs are 50 and 20).
NOTE: our sequences are left-padded where the authors' are right-padded: positions and
sessions count back from the newest interaction (the authors' sessions start at the oldest
one of the window), so the newest session is always full and a session's queries are its
last positions, with no per-row gather.
NOTE: λ weighs Σ_ij A_ij per sequence (averaged over the batch); the authors add 1e-5·Σ over
the whole batch, i.e. 6.4e-4 per sequence at their batch of 64 (``mgpt_l1``'s default).
At the N(0, 0.02) initialisation A ≈ σ(0) = 1/2 everywhere (a mean over the sequence), as
theirs.
NOTE: the authors mask neither padding keys in the global facet nor padding in the first
softmax of the session facet, and their mixer reads the padding positions' outputs; we mask
padding in all three (outputs at padding are zero before the mixer), so the states of real
positions do not depend on what padding holds.
NOTE: dropout is the profile's everywhere (the authors: 0.5 in the Transformer, 0.2 in the
graph convolution).
NOTE: a session's g newest states are summed into query g (their code's ``agg = "sum"``);
the authors' runs concatenate them (``"con"``, W_g of g·D × D): G² D² multiply-adds per
session instead of G D², ten times the cost of the whole facet at G = 10, for CPU training.
NOTE: the authors' session queries are reshaped into heads across the query axis and
normalised over the G queries; we split heads per query (q_g → H heads of d_k) and keep
W_g's output as the query, since the normalisation over queries mixes the grains.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .contract import init_weights, item_weight, masked_cross_entropy


# ---------------------------------------------------------------------------------------------
# Small blocks
# ---------------------------------------------------------------------------------------------
def interaction_adjacency(e: torch.Tensor, b: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """IDE's graph: A_ij = σ(⟨e_i ⊙ b_i, e_j ⊙ b_j⟩) between real interactions, 0 elsewhere.

    e, b (B, L, D) item and behavior embeddings; real (B, L) bool -> A (B, L, L). An edge reads
    both ends' item and behavior: the same item under two behaviors is two different nodes.
    """
    x = e * b  # (B, L, D)
    r = real.to(x.dtype)  # (B, L)
    return torch.sigmoid(x @ x.transpose(1, 2)) * r[:, :, None] * r[:, None, :]


def normalize_adjacency(A: torch.Tensor) -> torch.Tensor:
    """Â = D^{-1/2} (A + I) with D the degrees of A + I: A (B, L, L) -> (B, L, L).

    NOTE: one-sided, as the authors' code (the usual GCN normalisation is D^{-1/2} Ã D^{-1/2}).
    Padding rows of A are 0, so their row of Â is the identity's.
    """
    A = A + torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    return A * A.sum(-1).rsqrt()[:, :, None]


class InteractionGraph(nn.Module):
    """IDE: the orders h⁰..h^{K-1} of the interaction graph (module docstring).

    One graph convolution (W, c) is applied K-1 times, as in the authors' code.
    """

    def __init__(self, d_model: int, n_orders: int, dropout: float):
        super().__init__()
        assert n_orders >= 1, "mgpt_orders must be >= 1 (1: no graph convolution)"
        self.n_orders = n_orders
        self.gcn = nn.Linear(d_model, d_model)  # W, c
        self.drop = nn.Dropout(dropout)

    def forward(self, e: torch.Tensor, b: torch.Tensor, real: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """e, b (B, L, D), real (B, L) -> orders (K, B, L, D) and the graph A (B, L, L)."""
        A = interaction_adjacency(e, b, real)  # (B, L, L)
        A_hat = normalize_adjacency(A)  # (B, L, L)
        h = self.drop(e + b)  # (B, L, D) h⁰
        orders = [h]
        for _ in range(self.n_orders - 1):
            h = self.drop(F.leaky_relu(A_hat @ self.gcn(h)))  # (B, L, D) h^k
            orders.append(h)
        return torch.stack(orders), A


class GlobalAttention(nn.Module):
    """MSPG's global facet: linear attention with φ(z) = elu(z)/‖elu(z)‖ per head over the
    whole sequence, y⁰ = LN(u + W_o φ(Q) (φ(K)ᵀ V) / sqrt(d_k)) with u = LN(x + p).

    φ(K)ᵀ V is (d_k, d_k) per head: cost linear in L. Padding keys are zeroed (see the module
    docstring's NOTE).
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        assert d_model % n_heads == 0, f"d_model={d_model} must be divisible by n_heads={n_heads}"
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.ln_in, self.ln_out = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """x (B, L, D) states with positions added, real (B, L) -> (B, L, D)."""
        B, L, D = x.shape
        u = self.drop(self.ln_in(x))  # (B, L, D)
        q, k, v = self.qkv(u).view(B, L, 3, self.n_heads, self.d_head).unbind(2)  # (B, L, H, d_k)
        q, k = F.elu(q), F.elu(k)
        q = q / q.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        k = k / k.norm(dim=-1, keepdim=True).clamp(min=1e-12) * real[:, :, None, None]
        context = torch.einsum("blhd,blhe->bhde", k, v)  # (B, H, d_k, d_k) Σ_j φ(k_j)ᵀ v_j
        y = torch.einsum("blhd,bhde->blhe", q, context) / math.sqrt(self.d_head)  # (B, L, H, d_k)
        return self.ln_out(u + self.drop(self.out(y.reshape(B, L, D))))


def split_sessions(x: torch.Tensor, n_sessions: int) -> torch.Tensor:
    """(B, L, ...) -> (B, s, l, ...): s sessions of l = ceil(L/s) positions, the last one ending
    at the newest position; the front is padded with zeros (padding) to s·l."""
    B, L = x.shape[:2]
    length = -(-L // n_sessions)
    pad = n_sessions * length - L
    if pad:
        x = torch.cat([x.new_zeros((B, pad, *x.shape[2:])), x], dim=1)
    return x.view(B, n_sessions, length, *x.shape[2:])


class SessionAttention(nn.Module):
    """MSPG's multi-grained facet at one grain: the sequence in ``n_sessions`` sessions, each
    session's G preference queries c_g = W_g (x_l + .. + x_{l-g+1}) + d_g (its g newest
    interactions), each position weighed by α_j = softmax_j(2 ‖(a_gj)_g‖_p) with
    a_gj = softmax_j(2 σ(q_g · k_j)) per head, and y_j = LN(x_j + W_o(α_j v_j)) + p_j
    (module docstring). W_g for all g is one (G, D, D) table.
    """

    def __init__(self, d_model: int, n_heads: int, n_sessions: int, n_queries: int, lp: float,
                 dropout: float):
        super().__init__()
        assert d_model % n_heads == 0, f"d_model={d_model} must be divisible by n_heads={n_heads}"
        assert n_sessions >= 1 and n_queries >= 1, "sessions and queries must be >= 1"
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.n_sessions, self.n_queries, self.lp = n_sessions, n_queries, lp
        G, D = n_queries, d_model
        self.query_weight = nn.Parameter(nn.init.trunc_normal_(torch.empty(G, D, D), std=0.02,
                                                               a=-0.04, b=0.04))  # W_g
        self.query_bias = nn.Parameter(torch.zeros(G, D))
        self.q, self.k, self.v = (nn.Linear(d_model, d_model) for _ in range(3))
        self.out = nn.Linear(d_model, d_model)
        self.ln = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def weights(self, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """α: x (B, L, D), real (B, L) -> (B, s, n, H) weights of each session's positions
        (summing to 1 over a session's real positions, 0 at padding and in empty sessions)."""
        xs, rs = split_sessions(x, self.n_sessions), split_sessions(real, self.n_sessions)
        B, s, n, D = xs.shape
        G = min(self.n_queries, n)  # NOTE: a session of n < G positions has n queries
        newest = (xs * rs[..., None])[:, :, n - G:].flip(2)  # (B, s, G, D): newest first
        last_g = newest.cumsum(2)  # (B, s, G, D): row g-1 sums the session's last g states
        c = torch.einsum("bsgd,gde->bsge", last_g, self.query_weight[:G]) + self.query_bias[:G]
        q = self.q(c).view(B, s, G, self.n_heads, self.d_head)  # (B, s, G, H, d_k)
        k = self.k(xs).view(B, s, n, self.n_heads, self.d_head)  # (B, s, n, H, d_k)
        logits = 2 * torch.sigmoid(torch.einsum("bsghd,bsjhd->bshgj", q, k))  # (B, s, H, G, n)
        pad = ~rs[:, :, None, None, :]  # (B, s, 1, 1, n)
        lowest = torch.finfo(logits.dtype).min  # an empty session gets 0 weights, not NaN
        a = logits.masked_fill(pad, lowest).softmax(-1)  # (B, s, H, G, n)
        pooled = a.pow(self.lp).sum(3).clamp(min=1e-12).pow(1 / self.lp)  # (B, s, H, n) L_p
        alpha = (2 * pooled).masked_fill(pad[:, :, :, 0], lowest).softmax(-1)  # (B, s, H, n)
        return (alpha * rs[:, :, None, :]).transpose(2, 3)  # (B, s, n, H)

    def forward(self, x: torch.Tensor, p: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """x (B, L, D) states, p (1, L, D) positions, real (B, L) -> (B, L, D)."""
        B, L, D = x.shape
        alpha = self.weights(x, real).flatten(1, 2)[:, -L:]  # (B, L, H): the front padding dropped
        v = self.v(x).view(B, L, self.n_heads, self.d_head)  # (B, L, H, d_k)
        o = self.out((alpha[..., None] * v).reshape(B, L, D))  # (B, L, D)
        return self.ln(x + self.drop(o)) + p


class MSPGLayer(nn.Module):
    """One multifaceted layer: the global facet, the two session grains, the mixer over the 3L
    positions (W_mix: (L, 3L)), then a post-LN feed-forward network (width 4·D, GELU), at
    every position or, given ``select``, only at the positions whose states are read."""

    def __init__(self, d_model: int, n_heads: int, max_len: int, dropout: float,
                 grains: tuple[tuple[int, int], ...], lp: float):
        super().__init__()
        self.global_attention = GlobalAttention(d_model, n_heads, dropout)
        self.sessions = nn.ModuleList(SessionAttention(d_model, n_heads, s, G, lp, dropout)
                                      for s, G in grains)
        self.mixer = nn.Linear((1 + len(grains)) * max_len, max_len)  # W_mix, c_mix
        self.ffn = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(),
                                 nn.Linear(4 * d_model, d_model), nn.Dropout(dropout))
        self.ln = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, p: torch.Tensor, real: torch.Tensor,
                select: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, L, D), p (1, L, D), real (B, L) -> (B, L, D); with ``select`` (B, L) bool,
        the M selected positions' states only, (M, D) in row-major order."""
        facets = [self.global_attention(x + p, real)]
        facets += [session(x, p, real) for session in self.sessions]
        y = torch.cat(facets, dim=1) * real.repeat(1, len(facets))[:, :, None]  # (B, 3L, D)
        x = self.mixer(y.transpose(1, 2)).transpose(1, 2)  # (B, L, D) x'
        if select is not None:
            x = x[select]  # (M, D): the feed-forward network is per position
        return self.ln(x + self.ffn(x))


# ---------------------------------------------------------------------------------------------
# Config and model
# ---------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class MGPTConfig:
    """Sizes of M-GPT, built by ``Profile.config`` (fields carry the profile's names).

    ``mgpt_orders``: K, the graph orders (the authors' ``item_level`` = 3);
    ``mgpt_sessions``/``mgpt_queries``: the coarse grain's sessions per sequence and queries
    per session (the authors: 4 and 10); ``mgpt_fine_sessions``/``mgpt_fine_queries``: the
    fine grain's (10 and 4); ``mgpt_lp``: p of the pooling over queries (4); ``mgpt_l1``: λ,
    the weight of ‖A‖₁ per sequence; ``mgpt_hide_target``: the authors' behavior-free [mask].
    """

    n_items: int
    n_behaviors: int
    d_model: int
    n_heads: int
    n_layers: int
    dropout: float
    max_len: int
    mgpt_orders: int
    mgpt_sessions: int
    mgpt_queries: int
    mgpt_fine_sessions: int
    mgpt_fine_queries: int
    mgpt_lp: float
    mgpt_l1: float
    mgpt_hide_target: bool


class MGPT(nn.Module):
    """Embeddings → IDE (K orders) → the same MSPG layers on every order → max over orders of
    the tied-table scores (module docstring)."""

    def __init__(self, config: MGPTConfig):
        super().__init__()
        c = self.config = config
        D = c.d_model
        self.item_embedding = nn.Embedding(c.n_items + 2, D, padding_idx=0)  # 0 pad, N+1 [mask]
        self.behavior_embedding = nn.Embedding(c.n_behaviors + 2, D, padding_idx=0)  # n_b+1 [mask]
        self.position_embedding = nn.Embedding(c.max_len, D)
        self.graph = InteractionGraph(D, c.mgpt_orders, c.dropout)
        grains = ((c.mgpt_sessions, c.mgpt_queries), (c.mgpt_fine_sessions, c.mgpt_fine_queries))
        self.layers = nn.ModuleList(MSPGLayer(D, c.n_heads, c.max_len, c.dropout, grains, c.mgpt_lp)
                                    for _ in range(c.n_layers))
        self.apply(init_weights)  # nn.Linear / nn.Embedding; the query tables keep theirs

    def encode(self, items: torch.Tensor, behaviors: torch.Tensor,
               select: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """items, behaviors (B, L), L <= max_len -> the states of every order (K, B, L, D), or
        with ``select`` (B, L) bool those of its M positions (K, M, D), row-major; and the
        graph A (B, L', L'), L' = max_len (shorter rows are left-padded to it)."""
        B, L = items.shape
        assert L <= self.config.max_len, f"sequence length {L} > max_len {self.config.max_len}"
        pad = self.config.max_len - L
        items, behaviors = F.pad(items, (pad, 0)), F.pad(behaviors, (pad, 0))  # (B, L')
        real = items > 0  # (B, L') [mask] included
        orders, A = self.graph(self.item_embedding(items), self.behavior_embedding(behaviors), real)
        K, D = orders.shape[0], orders.shape[-1]
        x = orders.flatten(0, 1)  # (K·B, L', D): the orders share the MSPG
        real_k = real.repeat(K, 1)  # (K·B, L')
        select_k = None if select is None else F.pad(select, (pad, 0)).repeat(K, 1)  # (K·B, L')
        p = self.position_embedding.weight[None]  # (1, L', D)
        for i, layer in enumerate(self.layers):
            x = layer(x, p, real_k, select_k if i == len(self.layers) - 1 else None)
        if select is None:
            return x.view(K, B, -1, D)[:, :, pad:], A  # (K, B, L, D)
        return x.view(K, -1, D), A  # (K, M, D)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cloze loss: Σ over the K orders of the cross-entropy over all N items at the masked
        positions (targets > 0), plus λ·‖A‖₁ per sequence (the authors' objective)."""
        targets = batch["targets"]  # (B, L)
        h, A = self.encode(batch["items"], batch["behaviors"], targets > 0)  # (K, M, D)
        K = h.shape[0]
        ce = masked_cross_entropy(h.flatten(0, 1), targets[targets > 0].repeat(K),
                                  item_weight(self.item_embedding))  # mean over the K orders
        return K * ce + self.config.mgpt_l1 * A.sum((1, 2)).mean()

    def score_all(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
                  ) -> torch.Tensor:
        """Scores (B, N) of a prefix batch: the best order's score of each item at the [mask]
        column, which carries the row's target behavior (hidden with ``mgpt_hide_target``).
        ``generator`` is unused."""
        behaviors = batch["behaviors"]
        if self.config.mgpt_hide_target:
            behaviors = behaviors.clone()
            behaviors[:, -1] = self.config.n_behaviors + 1
        last = torch.zeros_like(behaviors, dtype=torch.bool)
        last[:, -1] = True
        h, _ = self.encode(batch["items"], behaviors, last)  # (K, B, D)
        scores = h @ item_weight(self.item_embedding).T  # (K, B, N)
        return scores.amax(0)
