"""MBGCN (Jin et al., "Multi-behavior Recommendation with Graph Convolutional Networks",
SIGIR 2020): a user-item graph with one edge type per behavior; users gather their items
through every behavior, weighted by a learned importance of that behavior, and items gather
the items that share a user under the same behavior (the behavior's "semantics").

How the sequence protocol maps onto a graph model (no sequence is read):

- The graph (``data.graph.training_graph``) holds the distinct (user, item, behavior) triples
  of every user's TRAINING part only: the validation and test items are never edges.
- A user is its row index, the ``user`` key that every prefix batch carries
  (``data.batches.PrefixView``); ``score_all`` ignores ``items`` / ``behaviors`` (the history
  is already in the graph) and scores the user's propagated representation against all items.
- Training rows are the training interactions (``data.batches.InteractionView``: ``user``,
  ``target``, ``target_behavior``), loss = softmax cross-entropy over all N items.

Equations, in the order the code computes them (u user, i/j items, t behavior, K behaviors,
N_t(u) the items of u under t, N(i) the users of i, N^I_t(i) the items sharing a t-user with i;
p_u, q_i the free embeddings, D wide):

    α_ut  = w_t n_ut / Σ_m w_m n_um                    behavior importance (w_t learned,
                                                        n_ut = |N_t(u)|)
    p'_u  = W Σ_t α_ut mean_{i ∈ N_t(u)} q_i            user-item propagation, user side
    q'_i  = W mean_{u ∈ N(i)} p_u                       user-item propagation, item side
    p*_u  = [p_u, p'_u],  q*_i = [q_i, q'_i]            (2D), message dropout on both
    y_ti  = [q_i, (mean_{j ∈ N^I_t(i)} q_j) W^I_t]      item-item propagation (2D)
    s_ut  = mean_{i ∈ N_t(u)} y_ti                      the user's items seen through t
    ŷ_ui  = p*_u · q*_i + (λ/K) Σ_t (s_ut M_t) · y_ti    user-based + item-based score

Both terms are bilinear, so ŷ_u = query_u · table_iᵀ with query_u = [p*_u, (λ/K) s_u1 M_1, ...,
(λ/K) s_uK M_K] and table_i = [q*_i, y_1i, ..., y_Ki]: one (B, N) product scores all items.

Shapes: B batch, U users, N items, K behaviors, D model width. Ids: items 1..N (row 0 of the
item embedding padding, N+1 [mask], as everywhere in the library), users 0..U−1.

NOTE: the paper trains BPR on the target behavior (purchase) only, one sampled negative per
positive; we train every training interaction, whatever its behavior, with a softmax over all
N items (the protocol of SASRec / GRU4Rec here), and the score does not depend on the target
behavior (the original predicts its one target behavior; evaluation here asks for every
behavior's next item).
NOTE: the authors' item side aggregates the target behavior's users by a plain sum; having no
single target behavior we average the users of every behavior (N(i) above).
NOTE: one propagation layer, as in the authors' released code (the paper writes the layers
in general); random initialisation instead of the authors' MF pre-training; the
authors' L2 penalty on the batch's embeddings is replaced by AdamW's weight decay.
NOTE: the graph excludes each user's last two interactions (our leave-one-out split), also at
test time: the validation item is in the test prefix's history but not in the graph.
NOTE: the item-item graph has no self loops (the authors ship theirs precomputed); an item
with no co-interacted item gets a zero second half of y_ti.

Standing on ml100k. The paper puts MBGCN close to BERT4Rec; here, under ``full``, it is at
popularity level: validation NDCG@10 0.018, 0.016 and 0.017 with λ = 0.1, 0.5 and 1 (seed 0,
``reports/ml100k/peer_search.md``; Pop 0.016, BERT4Rec 0.068), each best within its first three
epochs. With λ = 1, validation fell from 0.0166 after epoch 1 to 0.0068 by epoch 30 while the
training loss fell from 7.09 to 5.97, and a probe with batch 256 instead of 2,048 (8× the
steps) fell the same way (0.0150 to 0.0099 in 6 epochs), so it is not under-trained. We
believe this is the protocol, not the code: the model learns each user's training set as an
unordered whole, and the held-out item of a time-ordered leave-one-out split rewards the order
that it does not read (MB-GMN does the same). Its mechanisms are tested in
``tests/test_peer_graph.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.batches import Batch
from ..data.graph import BehaviorGraph, SparseProduct
from .contract import init_weights, item_weight, masked_cross_entropy


def user_of(batch: Batch) -> torch.Tensor:
    """The batch's ``user`` (B,) row indices; a graph model cannot score a history alone."""
    if "user" not in batch:
        raise KeyError("graph models score users by id: the batch needs a 'user' key "
                       "(PrefixView and InteractionView batches carry one)")
    return batch["user"].long()


@dataclass(kw_only=True)
class MBGCNConfig:
    """Sizes of MBGCN: N items, K behaviors, width D, message and node dropout, λ."""

    n_items: int
    n_behaviors: int
    d_model: int
    mbgcn_lambda: float           # λ: weight of the item-based score
    mbgcn_message_dropout: float  # dropout on p*_u, q*_i
    mbgcn_node_dropout: float     # dropout on the edges of the user-item graph


class MBGCN(nn.Module):
    """User-item and item-item propagation over the training graph (module docstring)."""

    def __init__(self, config: MBGCNConfig, graph: BehaviorGraph):
        super().__init__()
        c = self.config = config
        if (graph.n_items, graph.n_behaviors) != (c.n_items, c.n_behaviors):
            raise ValueError(f"graph of {graph.n_items} items, {graph.n_behaviors} behaviors; "
                             f"config {c.n_items}, {c.n_behaviors}: build both from one data")
        D, K = c.d_model, c.n_behaviors
        self.n_users = graph.n_users
        self.user_embedding = nn.Embedding(graph.n_users, D)                  # p_u
        self.item_embedding = nn.Embedding(c.n_items + 2, D, padding_idx=0)   # q_i, tied table
        self.behavior_weight = nn.Parameter(torch.ones(K))                    # w_t (authors: 1)
        self.W = nn.Linear(D, D, bias=False)                                  # W
        self.item_propagate = nn.Parameter(torch.randn(K, D, D) * D ** -0.5)      # W^I_t
        self.item_behavior = nn.Parameter(torch.randn(K, 2 * D, 2 * D) * (2 * D) ** -0.5)  # M_t
        self.message_drop = nn.Dropout(c.mbgcn_message_dropout)
        for module in (self.user_embedding, self.item_embedding, self.W):
            module.apply(init_weights)
        # the graph (not in the state dict: it is a function of the data, rebuilt from it)
        user_degree, _ = graph.degrees()
        self.register_buffer("user_degree", user_degree, persistent=False)      # n_ut (U, K)
        self.user_items = SparseProduct(graph.block("mean"))                    # (K·U, K·N)
        self.item_users = SparseProduct(graph.items_users())                    # (N, U)
        self.item_items = SparseProduct(graph.item_item())                      # (K·N, N)

    def node_dropout(self, matrix: SparseProduct) -> torch.Tensor:
        """The values of ``matrix`` with each edge dropped with probability p (the rest scaled
        by 1/(1−p)): the authors' node dropout, in training only."""
        return F.dropout(matrix.values, self.config.mbgcn_node_dropout, self.training)

    def represent(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every user's query (U, 2D(1+K)) and every item's row of the table (N, 2D(1+K))."""
        U, N, K, D = self.n_users, self.config.n_items, self.config.n_behaviors, self.config.d_model
        p = self.user_embedding.weight                                       # (U, D)
        q = item_weight(self.item_embedding)                                 # (N, D)
        # item-item propagation: y_ti = [q_i, mean_{j ∈ N^I_t(i)} q_j W^I_t]
        neighbours = self.item_items(q).view(K, N, D)                        # (K, N, D)
        y = torch.cat([q.expand(K, N, D), torch.bmm(neighbours, self.item_propagate)], -1)
        # s_ut = mean_{i ∈ N_t(u)} y_ti; its first half is mean_{i ∈ N_t(u)} q_i
        s = self.user_items(y.reshape(K * N, 2 * D), self.node_dropout(self.user_items))
        s = s.view(K, U, 2 * D)                                              # (K, U, 2D)
        # user-item propagation with the behavior importance α_ut
        w = self.behavior_weight
        alpha = self.user_degree * w / (self.user_degree @ w + 1e-8)[:, None]   # (U, K)
        p_prop = self.W(torch.einsum("uk,kud->ud", alpha, s[..., :D]))           # (U, D)
        # NOTE: the users of every behavior, averaged (authors: the target behavior's, summed)
        q_prop = self.W(self.item_users(p, self.node_dropout(self.item_users)))  # (N, D)
        p_star = self.message_drop(torch.cat([p, p_prop], -1))                   # (U, 2D)
        q_star = self.message_drop(torch.cat([q, q_prop], -1))                   # (N, 2D)
        # the item-based term as a query: (λ/K) s_ut M_t for every t, beside p*_u
        sM = torch.bmm(s, self.item_behavior) * (self.config.mbgcn_lambda / K)   # (K, U, 2D)
        query = torch.cat([p_star, sM.transpose(0, 1).reshape(U, K * 2 * D)], -1)
        table = torch.cat([q_star, y.transpose(0, 1).reshape(N, K * 2 * D)], -1)
        return query, table

    def loss(self, batch: Batch) -> torch.Tensor:
        """Mean softmax cross-entropy over all N items of each row's item (an
        ``InteractionView`` batch: ``user``, ``target``)."""
        query, table = self.represent()
        # NOTE: softmax over all items for every training interaction (authors: BPR, purchases)
        return masked_cross_entropy(query[user_of(batch)], batch["target"], table)

    def score_all(self, batch: Batch, generator: torch.Generator | None = None) -> torch.Tensor:
        """Scores (B, N) of the batch's users (``user``); the same under every target
        behavior (module docstring). ``generator`` is unused."""
        query, table = self.represent()
        return query[user_of(batch)] @ table.T
