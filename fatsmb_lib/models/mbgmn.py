"""MB-GMN (Xia et al., "Graph Meta Network for Multi-Behavior Recommendation", SIGIR 2021):
a meta-knowledge learner turns each user's and item's embedding into a behavior-specific,
personalised one; graph message passing runs per behavior and over all behaviors (mixed by a
light self-attention across behaviors); a meta prediction network, whose weights are generated
from the user's representations, scores a user-item pair under a target behavior.

How the sequence protocol maps onto a graph model (no sequence is read):

- The graph (``data.graph.training_graph``) holds the distinct (user, item, behavior) triples
  of every user's TRAINING part only: the validation and test items are never edges.
- A user is its row index, the ``user`` key that every prefix batch carries; ``score_all``
  scores all items for that user under the row's ``target_behavior`` and ignores the history
  columns (the history is already in the graph).
- Training rows are the training interactions (``data.batches.InteractionView``); the loss is
  the authors' pairwise hinge, max(0, 1 − (ŷ(u, i⁺) − ŷ(u, i⁻))), with
  ``mbgmn_negatives`` items drawn uniformly per row as i⁻.

Equations, in the order the code computes them (K behaviors; context k ∈ {1..K, all}: one
behavior, or all of them; Â_b = D_u^-½ A_b D_i^-½ the normalised behavior-b graph; e_u, e_i
free embeddings and e_k a behavior embedding, all d/2 wide; ψ = LeakyReLU):

    meta-knowledge learner, per context k (users shown; items the same with Â_bᵀ, and the
    first layer shared between users and items):
    n_uk   = Σ_{b ∈ k} (Â_b E_I)_u                      neighbour knowledge
    m_uk   = ψ(F_1 [e_k, e_u, n_uk])                     (d/2)
    W1_uk  = F_2 m_uk ∈ R^{d/2×r},  W2_uk = F_3 m_uk ∈ R^{r×d/2}    low-rank transformation
    h_uk   = [e_u W1_uk W2_uk, e_u]                      personalised, behavior-specific (d)
    behavior-specific message passing, context b, layers l = 0..L−1:
    u^{l+1} = ψ(Â_b i^l) + u^l,   i^{l+1} = ψ(Â_bᵀ u^l) + i^l,   u_b = Σ_l u^l (from h_ub)
    all-behavior message passing (context all):
    m_b    = ψ(Â_b i^l) for every b;  u^{l+1} = Σ_b (m_b + SA(m)_b),  u_all = Σ_l u^l
           SA: multi-head attention across the K messages, queries = keys = m Q, values = m
    meta prediction network for user u, item i, target behavior t (source: all):
    μ      = ψ(F_4 [u_all ⊙ u_t, u_all, u_t])                       meta knowledge (3d)
    W_1 = F_5 μ ∈ R^{3d×d},  b_1 = F_6 μ ∈ R^d,  w_2 = F_7 μ ∈ R^d   generated weights
    ŷ(u, i, t) = w_2 · ψ([u_all ⊙ i_all, u_all, i_all] W_1 + b_1)

The last line is computed as ψ(i_all (diag(u_all) W_1a + W_1c) + u_all W_1b + b_1) with
W_1 = [W_1a; W_1b; W_1c]: one (d, d) matrix per row scores every item with one product.

Shapes: B batch, U users, N items, K behaviors, d model width (``d_model``), r rank. Ids:
items 1..N (row 0 of the item embedding padding, N+1 [mask]), users 0..U−1.

NOTE: the authors generate the prediction network's weights per (user, item) pair from both
sides' representations; scoring all N items for every user that way costs B·N·3d·3d·d
multiply-adds (~10¹² per evaluation on ml100k), so our meta knowledge μ reads the user's
source and target representations only: personalised per user and target behavior, shared
across items.
NOTE: the authors sum the hinge over every (source, target) pair of behaviors, source ∈ {each
behavior, all}; we train the pair evaluation uses, source = all, target = the row's behavior.
NOTE: the authors' 100× score multiplier and L2 penalty are left out (AdamW's weight decay
instead); the negatives are uniform over all items (the authors' exclude the user's items of
that behavior: a collision is rare with N in the thousands).
NOTE: the graph excludes each user's last two interactions (our leave-one-out split), also at
test time: the validation item is in the test prefix's history but not in the graph.

Standing on ml100k. The paper puts MB-GMN level with BERT4Rec; here, under ``full``, it stays
near popularity: validation NDCG@10 0.023, 0.024 and 0.027 with 1, 2 and 3 GNN layers (seed 0,
``reports/ml100k/peer_search.md``; Pop 0.016, BERT4Rec 0.068). Each run peaked early (epochs
7, 22 and 12) and then fell back while its training loss kept falling, as MBGCN's does. We
believe this is the protocol, not the code: a graph model learns each user's training set as
an unordered whole, and the held-out item of a time-ordered leave-one-out split rewards the
order that it does not read. Its mechanisms are tested in ``tests/test_peer_graph.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.batches import Batch
from ..data.graph import BehaviorGraph, SparseProduct
from .contract import init_weights, item_weight
from .mbgcn import user_of


def leaky(x: torch.Tensor) -> torch.Tensor:
    """ψ: the authors' activation, max(x, 0.1·x) (LeakyReLU, their layers' slope 0.1)."""
    return F.leaky_relu(x, 0.1)


class LightSelfAttention(nn.Module):
    """Attention across the K behaviors of each node: queries = keys = x Q (one projection),
    values = x, H heads, plus the residual x. x (K, X, d) -> (K, X, d)."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        assert d_model % n_heads == 0, "d_model must be divisible by n_heads"
        self.n_heads = n_heads
        self.Q = nn.Linear(d_model, d_model, bias=False)
        self.Q.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        K, X, d = x.shape
        H = self.n_heads
        qk = self.Q(x).view(K, X, H, d // H)                                   # (K, X, H, d/H)
        v = x.view(K, X, H, d // H)
        att = torch.einsum("axhe,bxhe->xhab", qk, qk) / (d // H) ** 0.5        # (X, H, K, K)
        out = torch.einsum("xhab,bxhe->axhe", att.softmax(-1), v)              # (K, X, H, d/H)
        return out.reshape(K, X, d) + x


@dataclass(kw_only=True)
class MBGMNConfig:
    """Sizes of MB-GMN: N items, K behaviors, width d (embeddings d/2), attention heads, GNN
    layers, rank r of the meta transformation, negatives per training row."""

    n_items: int
    n_behaviors: int
    d_model: int
    n_heads: int
    mbgmn_layers: int
    mbgmn_rank: int
    mbgmn_negatives: int


class MBGMN(nn.Module):
    """Meta-knowledge learner, per-behavior and all-behavior message passing, meta prediction
    network (module docstring)."""

    def __init__(self, config: MBGMNConfig, graph: BehaviorGraph):
        super().__init__()
        c = self.config = config
        if (graph.n_items, graph.n_behaviors) != (c.n_items, c.n_behaviors):
            raise ValueError(f"graph of {graph.n_items} items, {graph.n_behaviors} behaviors; "
                             f"config {c.n_items}, {c.n_behaviors}: build both from one data")
        assert c.d_model % 2 == 0, "d_model must be even (embeddings are d_model/2 wide)"
        d, h, r, K = c.d_model, c.d_model // 2, c.mbgmn_rank, c.n_behaviors
        self.n_users = graph.n_users
        self.user_embedding = nn.Embedding(graph.n_users, h)                  # e_u
        self.item_embedding = nn.Embedding(c.n_items + 2, h, padding_idx=0)   # e_i (rows 1..N)
        self.behavior_embedding = nn.Embedding(K + 1, h)                      # e_k, last: all
        self.meta_in = nn.Linear(3 * h, h)                                    # F_1 (shared)
        self.user_w1, self.user_w2 = nn.Linear(h, h * r), nn.Linear(h, r * h)  # F_2, F_3
        self.item_w1, self.item_w2 = nn.Linear(h, h * r), nn.Linear(h, r * h)
        self.user_attention = nn.ModuleList(LightSelfAttention(d, c.n_heads)
                                            for _ in range(c.mbgmn_layers))
        self.item_attention = nn.ModuleList(LightSelfAttention(d, c.n_heads)
                                            for _ in range(c.mbgmn_layers))
        self.meta_out = nn.Linear(3 * d, 3 * d)                               # F_4
        self.gen_w1, self.gen_b1, self.gen_w2 = (nn.Linear(3 * d, 3 * d * d),  # F_5, F_6, F_7
                                                 nn.Linear(3 * d, d), nn.Linear(3 * d, d))
        self.apply(init_weights)
        # the generated weights start at a random matrix (their bias; the authors' Xavier
        # bias initialisation), not at zero, so the low-rank path carries signal from step 1
        with torch.no_grad():
            for layer, fan in ((self.user_w1, h + r), (self.user_w2, r + h),
                               (self.item_w1, h + r), (self.item_w2, r + h),
                               (self.gen_w1, 4 * d), (self.gen_w2, d + 1)):
                layer.bias.normal_(0.0, (2.0 / fan) ** 0.5)
        # the graph (not in the state dict: it is a function of the data, rebuilt from it)
        self.blocks = SparseProduct(graph.block("sym"))                      # (K·U, K·N)
        self.blocks_t = SparseProduct(graph.block("sym").t())                # (K·N, K·U)
        self.user_items = SparseProduct(graph.user_item("sym"))              # (K·U, N)
        self.item_users = SparseProduct(graph.item_user("sym"))              # (K·N, U)

    def specialise(self, e: torch.Tensor, neighbours: torch.Tensor, w1: nn.Linear,
                   w2: nn.Linear) -> torch.Tensor:
        """h_k = [e W1_k W2_k, e] for every context k: e (X, d/2) embeddings, neighbours
        (K+1, X, d/2) their n_k -> (K+1, X, d)."""
        K1, X, h = neighbours.shape
        r = self.config.mbgmn_rank
        behavior = self.behavior_embedding.weight[:, None, :].expand(K1, X, h)   # (K+1, X, h)
        m = leaky(self.meta_in(torch.cat([behavior, e.expand(K1, X, h), neighbours], -1)))
        W1 = w1(m).view(K1, X, h, r)                                            # (K+1, X, h, r)
        W2 = w2(m).view(K1, X, r, h)                                            # (K+1, X, r, h)
        low = torch.einsum("xh,kxhr->kxr", e, W1)                               # (K+1, X, r)
        return torch.cat([torch.einsum("kxr,kxrh->kxh", low, W2), e.expand(K1, X, h)], -1)

    def represent(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Users (K+1, U, d) and items (K+1, N, d): context b−1 = behavior b's message
        passing, context K = all behaviors'."""
        U, N, K = self.n_users, self.config.n_items, self.config.n_behaviors
        e_u, e_i = self.user_embedding.weight, item_weight(self.item_embedding)   # (U, h), (N, h)
        h = e_u.shape[1]
        # meta-knowledge learner: neighbour knowledge per behavior, and summed over all
        n_u = self.user_items(e_i).view(K, U, h)
        n_i = self.item_users(e_u).view(K, N, h)
        n_u, n_i = torch.cat([n_u, n_u.sum(0, True)]), torch.cat([n_i, n_i.sum(0, True)])
        h_u = self.specialise(e_u, n_u, self.user_w1, self.user_w2)               # (K+1, U, d)
        h_i = self.specialise(e_i, n_i, self.item_w1, self.item_w2)               # (K+1, N, d)
        d = h_u.shape[-1]
        # behavior-specific message passing: all K graphs at once, block-diagonal
        u, i = h_u[:K], h_i[:K]                                                   # (K, U|N, d)
        users, items = u, i
        for _ in range(self.config.mbgmn_layers):
            u, i = (leaky(self.blocks(i.reshape(K * N, d))).view(K, U, d) + u,
                    leaky(self.blocks_t(u.reshape(K * U, d))).view(K, N, d) + i)
            users, items = users + u, items + i
        # all-behavior message passing: each behavior's message, mixed across behaviors
        u, i = h_u[K], h_i[K]                                                     # (U|N, d)
        all_users, all_items = u, i
        for user_att, item_att in zip(self.user_attention, self.item_attention):
            u, i = (user_att(leaky(self.user_items(i)).view(K, U, d)).sum(0),
                    item_att(leaky(self.item_users(u)).view(K, N, d)).sum(0))
            all_users, all_items = all_users + u, all_items + i
        return torch.cat([users, all_users[None]]), torch.cat([items, all_items[None]])

    def predict(self, users: torch.Tensor, all_items: torch.Tensor, user: torch.Tensor,
                target_behavior: torch.Tensor, candidates: torch.Tensor | None) -> torch.Tensor:
        """ŷ(u, i, t) of the meta prediction network: users (K+1, U, d) and all_items (N, d)
        from :meth:`represent`, user and target_behavior (B,), candidates (B, C) item ids or
        None for all N items -> (B, C) or (B, N)."""
        K, U = self.config.n_behaviors, self.n_users
        # NOTE: μ reads the user's source and target representations only (authors: the pair's)
        # the generated weights depend on (user, target behavior) only: made once per distinct
        # pair of the batch (a training batch repeats users), then gathered for every row
        pair, row = torch.unique((target_behavior - 1) * U + user, return_inverse=True)
        src, tgt = users[K, pair % U], users[pair // U, pair % U]                # (P, d), (P, d)
        P, d = src.shape
        mu = leaky(self.meta_out(torch.cat([src * tgt, src, tgt], -1)))         # (P, 3d)
        W1a, W1b, W1c = self.gen_w1(mu).view(P, 3, d, d).unbind(1)              # 3 × (P, d, d)
        M = (src[:, :, None] * W1a + W1c)[row]                                   # (B, d, d)
        c = (torch.einsum("pd,pde->pe", src, W1b) + self.gen_b1(mu))[row]        # (B, d)
        i = all_items[None] if candidates is None else all_items[candidates - 1]  # (1|B, C, d)
        hidden = leaky(torch.matmul(i, M) + c[:, None])                          # (B, C, d)
        return torch.einsum("bcd,bd->bc", hidden, self.gen_w2(mu)[row])

    def loss(self, batch: Batch) -> torch.Tensor:
        """Mean pairwise hinge max(0, 1 − (ŷ⁺ − ŷ⁻)) of each row's item against
        ``mbgmn_negatives`` uniform items, under the row's behavior (an ``InteractionView``
        batch). The negatives come from the global generator (seeded per epoch by ``fit``)."""
        users, items = self.represent()
        target = batch["target"].long()                                         # (B,)
        # NOTE: uniform negatives, source = all, target = the row's behavior (authors: negatives
        # outside the user's items, every (source, target) pair of behaviors summed)
        negatives = torch.randint(1, self.config.n_items + 1,
                                  (len(target), self.config.mbgmn_negatives),
                                  device=target.device)                          # (B, C−1)
        candidates = torch.cat([target[:, None], negatives], 1)                  # (B, C)
        scores = self.predict(users, items[-1], user_of(batch),
                              batch["target_behavior"].long(), candidates)       # (B, C)
        return F.relu(1.0 - (scores[:, :1] - scores[:, 1:])).mean()

    def score_all(self, batch: Batch, generator: torch.Generator | None = None) -> torch.Tensor:
        """Scores (B, N) of the batch's users (``user``) under each row's
        ``target_behavior``. ``generator`` is unused."""
        users, items = self.represent()
        return self.predict(users, items[-1], user_of(batch),
                            batch["target_behavior"].long(), None)
