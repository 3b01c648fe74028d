"""MISSL, Multi-Interest Self-Supervised Learning for multi-behavior sequential recommendation
(Wu, Cheng, Yuan and Ma, "When Multi-Behavior Meets Multi-Interest", ICDE 2024).

Two parts share one embedding table:

- **the recommender**: a causal two-stream Transformer. The item stream reads E[v_j], the
  behavior stream B[b_j]; each stream's attention takes its queries from the OTHER stream and
  every projection and feed-forward network is specific to the token's behavior. The item
  stream predicts the next item, the behavior stream the next behavior, and a contrastive
  term ties the two streams' states at the same position (the "behavior-aware training task").
- **the multi-interest module** (a hypergraph transformer over one window): K behavior-specific
  interests per behavior and K behavior-agnostic (shared) interests per user, each a learned
  prototype that gathers the items it fits. Interests are the hyperedges of a per-window
  hypergraph over the items: extraction aggregates items into interests (node → hyperedge),
  interests of a group exchange messages, fusion sends interests back to items (hyperedge →
  node) and assigns each item to its closest interest of each kind. Self-supervised InfoNCE
  losses then pull each item towards its assigned interests (inter) and each behavior-specific
  interest towards the shared interests that the same items chose (intra).

Equations in the order the code implements them (numbers are ours: the paper's text was not
available to us, so the equations are read from its abstract and its authors' released code,
github.com/KNwbq/MISSL; ⟨·,·⟩ is cosine similarity, τ the temperature)::

    (1) e_j = E[v_j] + B[b_j] + P_j                        items as the interest module sees them
        x_j = E[v_j] + P_j + S_0,  y_j = B[b_j] + P_j + S_1   item / behavior stream inputs
    (2) extraction, interest k of group g (g = 1..n_b behavior-specific, g = n_b+1 shared):
        a_kj = softmax_j(q_g(c_k) · k_{b_j}(e_j) / sqrt(d_k)) over items j of behavior g
               (over all items for g = n_b+1; then key/value maps are shared, not per behavior),
        kept for the top-κ(n_g) items only, κ a log bucket of the number of such items n_g,
        c_k ← LN(c_k + Σ_j a_kj v_{b_j}(e_j)),  c_k ← LN(c_k + FFN_g(c_k))
    (3) group message passing (twice): C_g ← ReLU(C_g + A_g C_g), A_g ∈ R^{K×K} learned
    (4) fusion: p_jk = softmax_k(q_{b_j}(e_j) · k_g(c_k) / sqrt(d_k)) over the interests of
        b_j's group and the shared ones, the top ⌊εK⌋ of each kind kept;
        e_j ← LN(e_j + Σ_k p_jk v_g(c_k)),  e_j ← LN(e_j + FFN_{b_j}(e_j));
        assignments s_j = argmax over b_j's interests, a_j = argmax over shared interests
    (5) (2)-(4) repeated with one shared block; the interests of every round combined by a
        softmax over rounds, c_k = Σ_r softmax_r(⟨c^r_k, w_r⟩) c^r_k
    (6) two-stream layers: h ← LN(h + Attn(Q_b(y), K_b(h), V_b(h))),
                           y ← LN(y + Attn(Q_b(h), K_b(y), V_b(y))), then behavior-specific FFNs
    (7) L_item = CE(f_i(h_j) · E[1..N]^T + β_i, v_{j+1}),  f_i = LN ∘ ReLU ∘ Linear
    (8) L_beh  = CE(f_b(y_j) · B[1..n_b]^T + β_b, b_{j+1})
    (9) L_ib   = NT-Xent between h_j and y_j at one random target position per row
   (10) L_inter = Σ_{kind ∈ {s, a}} CE_j([⟨e_j, c_k⟩/τ]_k ‖ [⟨e_j, e_i⟩/τ]_i, assigned k)
                  + CE_k([⟨c_k, e_j⟩/τ]_j ‖ [⟨c_k, c_l⟩/τ]_{l≠k}, items assigned to k)
   (11) L_intra = CE_k([⟨c^s_k, c^a_l⟩/τ]_l ‖ [⟨c^s_k, c^s_m⟩/τ]_{m≠k}, co-assigned l) + mirror
   (12) L = L_item + λ_b L_beh + λ_ib L_ib + λ_inter L_inter + λ_intra L_intra

Symbol map (code ↔ equations)::

    item_embedding, behavior_embedding    E, B       (tied with the two heads)
    position, segment                     P, S
    interests.prototypes                  c^0        ((n_b+1)·K, D)
    InterestBlock.extract / .fuse         (2) / (4)
    GroupMixing.weight[g]                 A_g        (3)
    interests.round_query                 w_r        (5)
    missl_epsilon, missl_tau              ε, τ
    missl_lambda_*                        λ_*        (12)

Shapes: B batch, L sequence length, D model width, H heads, d_k = D/H, N items, n_b
behaviors, K interests per group, G = n_b + 1 groups, I = G·K interests, M selected rows.
Ids: items 1..N (0 padding, N+1 [mask]); behaviors 1..n_b (0 padding). Left-padded.

NOTE: the authors also add w·(fused item of (4)) to the item stream's input, w = 1e-4 in all
their released configurations. We leave that path out: under next-item training the interests
are pooled over the whole window, so at position j the fused item would carry the later items,
i.e. the targets (a leak that w = 1e-4 keeps small, not absent). The interests therefore act
on the recommendation as the authors' configuration makes them act: through the embedding
tables E, B, P that the self-supervised losses (10)-(11) shape and both streams read.
NOTE: trained on the library's next-item windows (every training item a target once, full
softmax over all N items); the authors keep each position's label with probability 0.7-0.9
and take one window per user per epoch (the newest, or a random one 20% of the time).
NOTE: the inter-interest label is the assigned interest's index within the item's group (the
released code takes the global index modulo n_b instead); each group has its own interest FFN
(the released code gives group 1 none); assignments are the argmax of head 0's scores (the
released code: of its attention weights after dropout).
NOTE: scores ignore the target behavior, as the authors' (the next item after the newest one).
NOTE: sizes and optimisation are the library's (d = 64, AdamW, lr 2e-3, weight decay 0.01);
the authors use d = 16, Adam, lr 1e-3, weight decay 1e-6 and K = 64. Our default K is 16
(``training.peers.MISSLSettings``): the interest side costs about I·d² per user, and K = 64
at d = 64 (I = 256 interests) doubles the CPU time of a training step on ml100k.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .contract import init_weights, item_weight, masked_cross_entropy
from .kernels import FastDropout
from .mbstr import BehaviorLinear

TOPK_BUCKETS = 24  # the authors' log-bucketing of item counts for extraction's top-κ (nb)


# ---------------------------------------------------------------------------------------------
# Small blocks
# ---------------------------------------------------------------------------------------------
def topk_size(count: torch.Tensor, max_len: int, n_buckets: int = TOPK_BUCKETS) -> torch.Tensor:
    """κ(n): how many items an interest keeps when n items are eligible (equation (2)).

    Exact for n < n_buckets/4, then logarithmic up to n = max_len, capped at n_buckets/2 − 1:
    κ(n) = min(n_b/4 + ⌊log(4n/n_b) / log(4·max_len/n_b) · n_b/4⌋, n_b/2 − 1) with n_b the
    bucket count, and never more than n. count (...) long -> (...) long.
    """
    quarter = n_buckets // 4
    scale = max(math.log(4 * max_len / n_buckets), 1e-6)
    wide = quarter + torch.floor(torch.log((4 * count.clamp(min=quarter)).float() / n_buckets)
                                 / scale * quarter).long()
    return torch.where(count < quarter, count, wide.clamp(max=n_buckets // 2 - 1)).minimum(count)


def keep_top(p: torch.Tensor, k: torch.Tensor | int) -> torch.Tensor:
    """p with all but its k largest entries along the last axis set to 0 (no renormalisation,
    as the authors). p (..., n) ≥ 0; k an int or a long tensor broadcastable to p's shape
    without its last axis, 0 ≤ k ≤ the number of positive entries (ties at the k-th value
    are all kept)."""
    k_max = int(k) if isinstance(k, int) else int(k.max())
    if k_max == 0:
        return p * 0.0
    top = p.detach().topk(min(k_max, p.shape[-1]), dim=-1).values  # (..., k_max) descending
    if isinstance(k, int):
        return p * (p >= top[..., -1:])
    k = k.expand(p.shape[:-1])[..., None]  # (..., 1)
    kth = top.gather(-1, (k - 1).clamp(min=0))  # (..., 1) the k-th largest
    return p * ((p >= kth) & (k > 0))


def heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, T, D) -> (B, H, T, d_k)."""
    B, T, D = x.shape
    return x.view(B, T, n_heads, D // n_heads).transpose(1, 2)


def merge(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, d_k) -> (B, T, D)."""
    B, H, T, dk = x.shape
    return x.transpose(1, 2).reshape(B, T, H * dk)


class GroupLinear(nn.Module):
    """y = x W_g + c_g for interests laid out group by group (K rows of group 1, then K of
    group 2, ...): one batched matmul per group, no routing (the group of a row is fixed)."""

    def __init__(self, n_groups: int, d_in: int, d_out: int):
        super().__init__()
        self.n_groups = n_groups
        self.weight = nn.Parameter(nn.init.trunc_normal_(torch.empty(n_groups, d_in, d_out),
                                                         std=0.02, a=-0.04, b=0.04))
        self.bias = nn.Parameter(torch.zeros(n_groups, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, G·K, d_in) -> (B, G·K, d_out)."""
        grouped = x.unflatten(1, (self.n_groups, -1))  # (B, G, K, d_in)
        y = torch.einsum("bgki,gio->bgko", grouped, self.weight) + self.bias[:, None]
        return y.flatten(1, 2)  # (B, G·K, d_out)


class GroupFFN(nn.Module):
    """FFN_g(c) = W2_g ReLU(W1_g c) with the weights of each interest's group."""

    def __init__(self, n_groups: int, d_model: int, dropout: float):
        super().__init__()
        self.up = GroupLinear(n_groups, d_model, 4 * d_model)
        self.down = GroupLinear(n_groups, 4 * d_model, d_model)
        self.drop = FastDropout(dropout)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        """c (B, I, D) -> (B, I, D)."""
        return self.down(self.drop(F.relu(self.up(c))))


class BehaviorFFN(nn.Module):
    """FFN_b(x) = W2_b ReLU(W1_b x) with the weights of each token's own behavior."""

    def __init__(self, n_behaviors: int, d_model: int, dropout: float):
        super().__init__()
        self.up = BehaviorLinear(n_behaviors, d_model, 4 * d_model)
        self.down = BehaviorLinear(n_behaviors, 4 * d_model, d_model)
        self.drop = FastDropout(dropout)

    def forward(self, x: torch.Tensor, behaviors: torch.Tensor) -> torch.Tensor:
        """x (..., D), behaviors (...) ids 1..n_b (0: output 0) -> (..., D)."""
        return self.down(self.drop(F.relu(self.up(x, behaviors))), behaviors)


class GroupMixing(nn.Module):
    """Equation (3): C_g ← ReLU(C_g + Dropout(A_g C_g)) for each group g of K interests."""

    def __init__(self, n_groups: int, n_interests: int, dropout: float):
        super().__init__()
        self.n_groups, self.n_interests = n_groups, n_interests
        self.weight = nn.Parameter(torch.randn(n_groups, n_interests, n_interests) * 0.02)
        self.drop = FastDropout(dropout)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        """c (B, I, D) -> (B, I, D)."""
        grouped = c.unflatten(1, (self.n_groups, self.n_interests))  # (B, G, K, D)
        mixed = torch.einsum("gmk,bgkd->bgmd", self.weight, grouped)  # (B, G, K, D)
        return F.relu(grouped + self.drop(mixed)).flatten(1, 2)  # (B, I, D)


class InterestBlock(nn.Module):
    """One round of the hypergraph transformer: extraction (2), group mixing (3), fusion (4).

    Interest i belongs to group ``group[i]``: 1..n_b the behavior-specific ones, n_b+1 the
    shared ones, K each, in that order. Item j may meet interest i when group[i] = b_j or
    group[i] = n_b+1 (``eligible``).
    """

    def __init__(self, d_model: int, n_heads: int, n_behaviors: int, n_interests: int,
                 max_len: int, epsilon: float, dropout: float):
        super().__init__()
        assert d_model % n_heads == 0, f"d_model={d_model} must be divisible by n_heads={n_heads}"
        D, G = d_model, n_behaviors + 1
        self.n_heads, self.n_behaviors, self.n_interests = n_heads, n_behaviors, n_interests
        self.max_len = max_len
        self.fusion_k = max(1, int(n_interests * epsilon))  # ⌊εK⌋ interests of each kind
        self.register_buffer("group", torch.arange(G * n_interests) // n_interests + 1,
                             persistent=False)  # (I,) 1..G
        # extraction (2): interest queries per group; item keys/values per behavior or shared
        self.extract_q = GroupLinear(G, D, D)
        self.extract_kv_specific = BehaviorLinear(n_behaviors, D, 2 * D)
        self.extract_kv_shared = nn.Linear(D, 2 * D)
        self.interest_ffn = GroupFFN(G, D, dropout)
        self.mixing = nn.ModuleList(GroupMixing(G, n_interests, dropout) for _ in range(2))
        # fusion (4): item queries per behavior, interest keys/values per group
        self.fuse_q = BehaviorLinear(n_behaviors, D, D)
        self.fuse_kv = GroupLinear(G, D, 2 * D)
        self.item_ffn = BehaviorFFN(n_behaviors, D, dropout)
        self.norms = nn.ModuleList(nn.LayerNorm(D) for _ in range(4))
        self.drop = FastDropout(dropout)

    def eligible(self, behaviors: torch.Tensor) -> torch.Tensor:
        """(B, L) behaviors -> (B, I, L) bool: interest i may gather item j (padding: never)."""
        shared = self.group == self.n_behaviors + 1  # (I,)
        own = self.group[None, :, None] == behaviors[:, None, :]  # (B, I, L)
        return own | (shared[None, :, None] & (behaviors > 0)[:, None, :])

    def extract(self, e: torch.Tensor, behaviors: torch.Tensor, c: torch.Tensor,
                eligible: torch.Tensor) -> torch.Tensor:
        """Equation (2)'s attention: items e (B, L, D), interests c (B, I, D) -> (B, I, D)."""
        D = e.shape[-1]
        n_specific = self.n_behaviors * self.n_interests
        q = heads(self.extract_q(c), self.n_heads)  # (B, H, I, d_k)
        specific = self.extract_kv_specific(e, behaviors).split(D, -1)
        k_s, v_s = (heads(t, self.n_heads) for t in specific)  # (B, H, L, d_k)
        k_a, v_a = (heads(t, self.n_heads) for t in self.extract_kv_shared(e).split(D, -1))
        scores = torch.cat([q[:, :, :n_specific] @ k_s.transpose(-1, -2),
                            q[:, :, n_specific:] @ k_a.transpose(-1, -2)], dim=2)  # (B, H, I, L)
        allowed = eligible[:, None]  # (B, 1, I, L)
        scores = scores / math.sqrt(D // self.n_heads)
        attn = scores.masked_fill(~allowed, -1e9).softmax(-1) * allowed
        kappa = topk_size(eligible.sum(-1), self.max_len)[:, None]  # (B, 1, I)
        attn = self.drop(keep_top(attn, kappa))  # (B, H, I, L)
        out = torch.cat([attn[:, :, :n_specific] @ v_s, attn[:, :, n_specific:] @ v_a], dim=2)
        return merge(out)  # (B, I, D)

    def fuse(self, e: torch.Tensor, behaviors: torch.Tensor, c: torch.Tensor,
             eligible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Equation (4)'s attention and assignments: e (B, L, D), c (B, I, D) ->
        fused (B, L, D), s (B, L) in 0..n_b·K−1, a (B, L) in 0..K−1 (padding: arbitrary)."""
        D = e.shape[-1]
        n_specific = self.n_behaviors * self.n_interests
        q = heads(self.fuse_q(e, behaviors), self.n_heads)  # (B, H, L, d_k)
        k, v = (heads(t, self.n_heads) for t in self.fuse_kv(c).split(D, -1))
        scores = q @ k.transpose(-1, -2) / math.sqrt(D // self.n_heads)  # (B, H, L, I)
        allowed = eligible.transpose(1, 2)[:, None]  # (B, 1, L, I)
        attn = scores.masked_fill(~allowed, -1e9).softmax(-1) * allowed
        attn = torch.cat([keep_top(attn[..., :n_specific], self.fusion_k),
                          keep_top(attn[..., n_specific:], self.fusion_k)], dim=-1)
        first = scores[:, 0].masked_fill(~allowed[:, 0], float("-inf"))  # (B, L, I) head 0
        s = first[..., :n_specific].argmax(-1)  # (B, L)
        a = first[..., n_specific:].argmax(-1)  # (B, L)
        return merge(self.drop(attn) @ v), s, a

    def forward(self, e: torch.Tensor, behaviors: torch.Tensor, c: torch.Tensor,
                update_items: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One round: items e (B, L, D), interests c (B, I, D) -> e', c', s, a. With
        ``update_items=False`` (the last round, whose items nothing reads) e' is e."""
        eligible = self.eligible(behaviors)  # (B, I, L)
        c = self.norms[0](c + self.drop(self.extract(e, behaviors, c, eligible)))
        c = self.norms[1](c + self.drop(self.interest_ffn(c)))
        for mixing in self.mixing:
            c = mixing(c)
        fused, s, a = self.fuse(e, behaviors, c, eligible)
        if update_items:
            e = self.norms[2](e + self.drop(fused))
            e = self.norms[3](e + self.drop(self.item_ffn(e, behaviors)))
        return e, c, s, a


class InterestEncoder(nn.Module):
    """Equations (2)-(5): learned prototypes c^0, one :class:`InterestBlock` applied
    ``n_rounds`` times (shared weights, as the authors), rounds combined by attention."""

    def __init__(self, d_model: int, n_heads: int, n_behaviors: int, n_interests: int,
                 n_rounds: int, max_len: int, epsilon: float, dropout: float):
        super().__init__()
        assert n_rounds >= 1, "missl_interest_layers must be >= 1: the interests need a round"
        self.n_rounds = n_rounds
        n_all = (n_behaviors + 1) * n_interests
        self.prototypes = nn.Parameter(torch.randn(n_all, d_model) * 0.02)  # c^0 (I, D)
        self.round_query = nn.Parameter(torch.randn(n_rounds + 1, d_model) * 0.02)  # w_r
        self.block = InterestBlock(d_model, n_heads, n_behaviors, n_interests, max_len, epsilon,
                                   dropout)
        self.drop = FastDropout(dropout)

    def forward(self, e: torch.Tensor, behaviors: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Items e (B, L, D), behaviors (B, L) -> interests (B, I, D) and the last round's
        assignments s, a (B, L)."""
        c = self.drop(self.prototypes).expand(e.shape[0], -1, -1)  # (B, I, D)
        rounds = [c]
        for r in range(self.n_rounds):
            e, c, s, a = self.block(e, behaviors, c, update_items=r < self.n_rounds - 1)
            rounds.append(c)
        stacked = torch.stack(rounds, dim=1)  # (B, R+1, I, D)
        weight = torch.einsum("brid,rd->bri", stacked, self.round_query).softmax(dim=1)
        return torch.einsum("bri,brid->bid", weight, stacked), s, a


class TwoStreamBlock(nn.Module):
    """Equation (6), post-LN as the authors: each stream's causal attention takes its queries
    from the other stream; projections and FFNs are specific to each token's behavior, and
    there is no output projection after attention (as in the authors' code)."""

    def __init__(self, d_model: int, n_heads: int, n_behaviors: int, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.item_qkv = BehaviorLinear(n_behaviors, d_model, 3 * d_model)
        self.behavior_qkv = BehaviorLinear(n_behaviors, d_model, 3 * d_model)
        self.item_ffn = BehaviorFFN(n_behaviors, d_model, dropout)
        self.behavior_ffn = BehaviorFFN(n_behaviors, d_model, dropout)
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(4))
        self.drop = FastDropout(dropout)

    def forward(self, h: torch.Tensor, y: torch.Tensor, behaviors: torch.Tensor,
                allowed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h, y (B, L, D) item and behavior streams, allowed (L', L') or (B, 1, L, L) bool."""
        D = h.shape[-1]
        q_h, k_h, v_h = (heads(t, self.n_heads) for t in self.item_qkv(h, behaviors).split(D, -1))
        q_y, k_y, v_y = (heads(t, self.n_heads)
                         for t in self.behavior_qkv(y, behaviors).split(D, -1))
        p = self.dropout if self.training else 0.0
        h_new = merge(F.scaled_dot_product_attention(q_y, k_h, v_h, allowed, dropout_p=p))
        y_new = merge(F.scaled_dot_product_attention(q_h, k_y, v_y, allowed, dropout_p=p))
        h, y = self.norms[0](h + self.drop(h_new)), self.norms[1](y + self.drop(y_new))
        h = self.norms[2](h + self.drop(self.item_ffn(h, behaviors)))
        y = self.norms[3](y + self.drop(self.behavior_ffn(y, behaviors)))
        return h, y


def info_nce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over rows of −Σ_c target_c log softmax(logits)_c: logits and target (..., C), target
    one-hot or multi-hot (the authors' un-normalised multi-positive form; a row without any
    positive adds 0 and still counts in the mean)."""
    return -(target * logits.log_softmax(-1)).sum(-1).mean()


def without_self(sim: torch.Tensor) -> torch.Tensor:
    """sim (..., n, n) with its diagonal masked out of a softmax."""
    eye = torch.eye(sim.shape[-1], dtype=torch.bool, device=sim.device)
    return sim.masked_fill(eye, -1e9)


# ---------------------------------------------------------------------------------------------
# Config and model
# ---------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class MISSLConfig:
    """Sizes and loss weights of MISSL, built by ``Profile.config`` (fields carry the profile's
    names). ``missl_interests``: K interests per behavior and K shared (the authors: 64);
    ``missl_interest_layers``: rounds of the interest block (2); ``missl_epsilon``: fusion keeps
    ⌊εK⌋ of each kind (0.6; 1.0 on Retail); ``missl_tau``: τ (1.0); ``missl_lambda_*``: λ of
    equation (12) (behavior 1.0 / 0.5, ib 0.05 / 0.01, inter and intra 0.05 / 0.01)."""

    n_items: int
    n_behaviors: int
    d_model: int
    n_heads: int
    n_layers: int
    dropout: float
    max_len: int
    missl_interests: int
    missl_interest_layers: int
    missl_epsilon: float
    missl_tau: float
    missl_lambda_behavior: float
    missl_lambda_ib: float
    missl_lambda_inter: float
    missl_lambda_intra: float


class MISSL(nn.Module):
    """Embeddings (1) → interest encoder (2)-(5) for the self-supervised losses, and the
    two-stream causal Transformer (6) with its two heads (7)-(8); the loss is (12)."""

    def __init__(self, config: MISSLConfig):
        super().__init__()
        c = self.config = config
        D = c.d_model
        self.item_embedding = nn.Embedding(c.n_items + 2, D, padding_idx=0)  # 0 pad, N+1 [mask]
        # behaviors: 0 pad, 1..n_b, n_b+1 [mask]
        self.behavior_embedding = nn.Embedding(c.n_behaviors + 2, D, padding_idx=0)
        self.position = nn.Embedding(c.max_len, D)
        self.segment = nn.Embedding(2, D)  # S_0 item stream, S_1 behavior stream
        self.drop = FastDropout(c.dropout)
        self.interests = InterestEncoder(D, c.n_heads, c.n_behaviors, c.missl_interests,
                                         c.missl_interest_layers, c.max_len, c.missl_epsilon,
                                         c.dropout)
        self.blocks = nn.ModuleList(TwoStreamBlock(D, c.n_heads, c.n_behaviors, c.dropout)
                                    for _ in range(c.n_layers))
        self.item_head = nn.Sequential(nn.Linear(D, D), nn.ReLU(), nn.LayerNorm(D))  # f_i
        self.behavior_head = nn.Sequential(nn.Linear(D, D), nn.ReLU(), nn.LayerNorm(D))  # f_b
        self.item_bias = nn.Parameter(torch.zeros(c.n_items))  # β_i
        self.behavior_bias = nn.Parameter(torch.zeros(c.n_behaviors))  # β_b
        self.apply(init_weights)  # Linear / Embedding; prototypes and mixings keep N(0, 0.02)

    # ------------------------------------------------------------------ the recommender
    def embed(self, items: torch.Tensor, behaviors: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Equation (1): items, behaviors (B, L) -> e, x, y (B, L, D)."""
        L = items.shape[1]
        assert L <= self.config.max_len, f"sequence length {L} > max_len {self.config.max_len}"
        E, Bh = self.item_embedding(items), self.behavior_embedding(behaviors)  # (B, L, D)
        P = self.position.weight[:L]  # (L, D)
        S0, S1 = self.segment.weight  # (D,), (D,)
        return self.drop(E + Bh + P), self.drop(E + P + S0), self.drop(Bh + P + S1)

    def encode(self, items: torch.Tensor, behaviors: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """items, behaviors (B, L) -> e (interest module's items), h (item stream), y
        (behavior stream), each (B, L, D). Causal: column j reads columns ≤ j only."""
        L = items.shape[1]
        e, h, y = self.embed(items, behaviors)
        causal = torch.ones(L, L, dtype=torch.bool, device=items.device).tril()  # (L, L)
        real = (items > 0)[:, None, None, :]  # (B, 1, 1, L)
        itself = torch.eye(L, dtype=torch.bool, device=items.device)  # no row without a key
        allowed = causal & (real | itself)  # (B, 1, L, L)
        for block in self.blocks:
            h, y = block(h, y, behaviors, allowed)
        return e, h, y

    def item_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Equation (7)'s scores: h (M, D) -> (M, N)."""
        return self.item_head(h) @ item_weight(self.item_embedding).T + self.item_bias

    # ------------------------------------------------------------------ the losses
    def behavior_aware_losses(self, h: torch.Tensor, y: torch.Tensor, batch: dict
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Equations (7), (8), (9) on a next-item batch's states h, y (B, L, D)."""
        targets, target_behaviors = batch["targets"], batch["target_behaviors"]
        l_item = masked_cross_entropy(h, targets, item_weight(self.item_embedding),
                                      query=self.item_head, bias=self.item_bias)
        l_beh = masked_cross_entropy(y, target_behaviors,
                                     self.behavior_embedding.weight[1:-1],
                                     query=self.behavior_head, bias=self.behavior_bias)
        has = targets > 0  # (B, L)
        rows = has.any(-1)  # (B,)
        pick = (torch.rand(has.shape, device=h.device) * has).argmax(-1)[rows]  # (M,) one per row
        l_ib = self.item_behavior_contrast(h[rows, pick], y[rows, pick])
        return l_item, l_beh, l_ib

    def item_behavior_contrast(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Equation (9): NT-Xent over the 2M views [h; y] (M, D) each: the positive of h_r is
        y_r (and back), every other view of the batch a negative."""
        M = h.shape[0]
        if M < 2:
            return h.sum() * 0.0  # no negatives: nothing to contrast
        z = F.normalize(torch.cat([h, y]), dim=-1)  # (2M, D)
        sim = without_self(z @ z.T / self.config.missl_tau)  # (2M, 2M)
        positive = (torch.arange(2 * M, device=h.device) + M) % (2 * M)
        return F.cross_entropy(sim, positive)

    def interest_losses(self, e: torch.Tensor, behaviors: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Equations (10), (11): the interests of the window e (B, L, D) and the two InfoNCE
        losses that tie items, behavior-specific and shared interests."""
        B, L, _ = e.shape
        K, nb, tau = self.config.missl_interests, self.config.n_behaviors, self.config.missl_tau
        c, s, a = self.interests(e, behaviors)  # (B, I, D), (B, L), (B, L)
        real = behaviors > 0  # (B, L)
        e_n, c_n = F.normalize(e, dim=-1), F.normalize(c, dim=-1)
        c_s, c_a = c_n[:, :nb * K], c_n[:, nb * K:]  # (B, nb·K, D), (B, K, D)

        # (10) item -> its assigned interest among its group's K (or the K shared), against
        # the other items of the window that chose other interests of both kinds
        item_item = (e_n @ e_n.transpose(1, 2)) / tau  # (B, L, L)
        same = (s[:, :, None] == s[:, None, :]) | (a[:, :, None] == a[:, None, :])  # incl. self
        item_item = item_item.masked_fill(same | ~real[:, None, :], -1e9)
        to_specific = ((e_n @ c_s.transpose(1, 2)) / tau).view(B, L, nb, K)  # (B, L, nb, K)
        group = (behaviors - 1).clamp(min=0)  # (B, L)
        to_own = to_specific.gather(2, group[:, :, None, None].expand(-1, -1, 1, K)).squeeze(2)
        to_shared = (e_n @ c_a.transpose(1, 2)) / tau  # (B, L, K)
        own_label = F.one_hot(s - group * K, K).float()  # (B, L, K) index within the group
        shared_label = F.one_hot(a, K).float()
        zeros = torch.zeros_like(item_item)
        l_items = (info_nce(torch.cat([to_own, item_item], -1)[real],
                           torch.cat([own_label, zeros], -1)[real])
                   + info_nce(torch.cat([to_shared, item_item], -1)[real],
                              torch.cat([shared_label, zeros], -1)[real]))

        # (10) interest -> the items assigned to it, against the other interests of its kind
        members_s = F.one_hot(s, nb * K).float() * real[..., None]  # (B, L, nb·K)
        members_a = F.one_hot(a, K).float() * real[..., None]  # (B, L, K)
        l_interests = 0.0
        for c_kind, members in ((c_s, members_s), (c_a, members_a)):
            to_items = ((c_kind @ e_n.transpose(1, 2)) / tau).masked_fill(~real[:, None, :], -1e9)
            among = without_self(c_kind @ c_kind.transpose(1, 2) / tau)  # (B, n, n)
            target = torch.cat([members.transpose(1, 2), torch.zeros_like(among)], -1)
            l_interests = l_interests + info_nce(torch.cat([to_items, among], -1), target)

        # (11) behavior-specific interest <-> the shared interests its items also chose
        co = (members_s.transpose(1, 2) @ members_a > 0).float()  # (B, nb·K, K)
        s_to_a = c_s @ c_a.transpose(1, 2) / tau  # (B, nb·K, K)
        among_s = without_self(c_s @ c_s.transpose(1, 2) / tau)  # (B, nb·K, nb·K)
        among_a = without_self(c_a @ c_a.transpose(1, 2) / tau)  # (B, K, K)
        l_intra = (info_nce(torch.cat([s_to_a, among_s], -1),
                            torch.cat([co, torch.zeros_like(among_s)], -1))
                   + info_nce(torch.cat([s_to_a.transpose(1, 2), among_a], -1),
                              torch.cat([co.transpose(1, 2), torch.zeros_like(among_a)], -1)))
        return l_items + l_interests, l_intra

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Equation (12) on a next-item batch (``NextItemView``: ``targets`` and
        ``target_behaviors`` the next item and its behavior at every position, 0 = none)."""
        c = self.config
        e, h, y = self.encode(batch["items"], batch["behaviors"])
        l_item, l_beh, l_ib = self.behavior_aware_losses(h, y, batch)
        l_inter, l_intra = self.interest_losses(e, batch["behaviors"])
        return (l_item + c.missl_lambda_behavior * l_beh + c.missl_lambda_ib * l_ib
                + c.missl_lambda_inter * l_inter + c.missl_lambda_intra * l_intra)

    def score_all(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
                  ) -> torch.Tensor:
        """Scores (B, N) of a prefix batch from the item stream at column L-2 (the newest real
        item); causal attention keeps the [mask] column L-1 out of it. ``target_behavior``
        and ``generator`` are unused."""
        _, h, _ = self.encode(batch["items"], batch["behaviors"])  # (B, L, D)
        return self.item_logits(h[:, -2])
