"""GRU4Rec (Hidasi et al., ICLR 2016) in its RecBole next-item form: a GRU reads the item
sequence, and the state after item j scores every item as the next one.

    e_j   = Dropout(E[v_j])                     item embedding, E tied with the output table
    s_j   = GRU(e_j, s_{j-1}),  s_0 = 0         one layer, hidden width D, no biases
    ŷ_j   = (W s_j + c) · E[1..N]^T             scores of all N items (B, L, N)
    loss  = CE(ŷ_j, v_{j+1}) averaged over every position with a next item

Shapes: B batch, L sequence length, D model width, N items. Ids as everywhere in the library:
items 1..N (0 padding, N+1 [mask]).

NOTE: the 2016 paper trains session-parallel mini-batches with sampled (BPR/TOP1) losses;
we follow RecBole's variant (full softmax over all items, every position of a window), the
protocol of SASRec in this library, so the two differ only in the sequence encoder.
NOTE: RecBole's GRU has no biases, and we keep that: with zero input (the padding embedding
is 0) and s_0 = 0 the update gives s = 0 again, so left padding leaves the state exactly at
s_0 and needs no packing.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .contract import init_weights, item_weight, masked_cross_entropy


@dataclass(kw_only=True)
class GRU4RecConfig:
    """Sizes of GRU4Rec: N items, width D (embedding = GRU hidden), dropout on embeddings."""

    n_items: int
    d_model: int
    dropout: float


class GRU4Rec(nn.Module):
    """Embedding → dropout → GRU → linear, scored against the tied item table (module docstring)."""

    def __init__(self, config: GRU4RecConfig):
        super().__init__()
        c = self.config = config
        self.item_embedding = nn.Embedding(c.n_items + 2, c.d_model, padding_idx=0)  # 0 pad, N+1 [mask]
        self.drop = nn.Dropout(c.dropout)
        self.gru = nn.GRU(c.d_model, c.d_model, num_layers=1, bias=False, batch_first=True)
        self.dense = nn.Linear(c.d_model, c.d_model)  # W, c: GRU state -> item space
        self.item_embedding.apply(init_weights)
        self.dense.apply(init_weights)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """items (B, L) left-padded -> W s_j + c at every position (B, L, D)."""
        states, _ = self.gru(self.drop(self.item_embedding(items)))  # (B, L, D)
        return self.dense(states)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean next-item cross-entropy over all N items at positions with targets > 0
        (a ``NextItemView`` batch)."""
        h = self(batch["items"])  # (B, L, D)
        return masked_cross_entropy(h, batch["targets"], item_weight(self.item_embedding))

    def score_all(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
                  ) -> torch.Tensor:
        """Scores (B, N) of a prefix batch from the state after the newest real item (column
        L-2). The [mask] column L-1 is not fed to the GRU at all. ``generator`` is unused."""
        h = self(batch["items"][:, :-1])  # (B, L-1, D)
        return h[:, -1] @ item_weight(self.item_embedding).T
