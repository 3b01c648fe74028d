"""Baselines under the same contract as FatsMB (``contract.Recommender``): ``loss(batch)`` and
``score_all(batch, generator=None) -> (B, N)`` (column j = item id j+1). Pop (overall or
behavior-specific popularity), BERT4Rec (the MBAE without behaviors, APE, Cloze; paper
Appendix D), SASRec (causal Transformer, next-item softmax over all items at every position)
and its behavior-aware variant.

Shapes: B batch, L sequence length, D model width, N items, n_behaviors behaviors.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from .contract import item_weight, masked_cross_entropy
from .encoder import MBAE, EncoderConfig, SequenceEncoder


class Pop(nn.Module):
    """Most-popular items by training interaction counts.

    ``counts`` is (n_behaviors + 1, N): row 0 counts every training interaction of an item,
    row b counts those with behavior b. ``per_behavior=False`` scores every row with row 0;
    ``per_behavior=True`` with the row of its target behavior (behavior-specific popularity).
    Equal counts are equal scores: the evaluator's tie rule decides their order.
    """

    def __init__(self, counts: torch.Tensor, per_behavior: bool = False):
        super().__init__()
        self.per_behavior = per_behavior
        self.register_buffer("counts", counts.to(torch.float32))

    @classmethod
    def fit(
        cls,
        items: torch.Tensor,
        behaviors: torch.Tensor,
        n_items: int,
        n_behaviors: int,
        per_behavior: bool = False,
    ) -> "Pop":
        """Count training (item, behavior) pairs, given as two 1-D (or any equal-shape) tensors;
        id 0 (padding) is skipped."""
        items, behaviors = items.reshape(-1), behaviors.reshape(-1)
        real = items > 0
        items, behaviors = items[real] - 1, behaviors[real]  # item id -> column
        assert (items < n_items).all() and (behaviors <= n_behaviors).all(), (
            "item or behavior ids exceed n_items / n_behaviors; pass the dataset's sizes"
        )
        per = torch.bincount(behaviors * n_items + items, minlength=(n_behaviors + 1) * n_items)
        counts = per.view(n_behaviors + 1, n_items).clone()  # row 0 holds behavior-0 pairs: none
        counts[0] = torch.bincount(items, minlength=n_items)
        return cls(counts, per_behavior)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pop is fitted by counting (``Pop.fit``), not by gradient descent."""
        raise NotImplementedError("Pop has no training loss: build it with Pop.fit(...) and skip training")

    def score_all(self, batch: dict[str, torch.Tensor],
                  generator: torch.Generator | None = None) -> torch.Tensor:
        """Counts of all items (B, N): overall, or under each row's ``target_behavior``."""
        B = batch["items"].shape[0]
        if self.per_behavior:
            return self.counts[batch["target_behavior"]]  # (B, N)
        return self.counts[0].expand(B, -1)  # (B, N)


class BERT4Rec(MBAE):
    """BERT4Rec [46]: the MBAE without behavior information, with learned absolute positions,
    trained by the same Cloze loss. ``config`` supplies the sizes; ``use_behavior``,
    ``position`` and ``causal`` are overridden."""

    def __init__(self, config: EncoderConfig):
        super().__init__(replace(config, use_behavior=False, position="ape", causal=False))


class SASRec(nn.Module):
    """SASRec: causal Transformer (APE) trained on next-item prediction at every position, full
    softmax over all N items, scores = hidden state · tied item embeddings.

    ``use_behavior=True`` adds the behaviors of the INPUT tokens (Eq. 9); the target behavior
    of a prefix batch sits in the [mask] column, which ``score_all`` never looks at.
    """

    def __init__(self, config: EncoderConfig, *, use_behavior: bool = False):
        super().__init__()
        self.config = replace(config, causal=True, position="ape", use_behavior=use_behavior)
        self.encoder = SequenceEncoder(self.config)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean next-item cross-entropy over all N items at positions with targets > 0 (a
        ``NextItemView`` batch)."""
        h = self.encoder(batch["items"], batch["behaviors"])  # (B, L, D)
        return masked_cross_entropy(h, batch["targets"], item_weight(self.encoder.item_embedding))

    def score_all(self, batch: dict[str, torch.Tensor],
                  generator: torch.Generator | None = None) -> torch.Tensor:
        """Scores (B, N) of a prefix batch from the hidden state at column L-2 (the newest real
        item); causal attention keeps the [mask] column L-1 out of it."""
        h = self.encoder(batch["items"], batch["behaviors"])  # (B, L, D)
        return h[:, -2] @ item_weight(self.encoder.item_embedding).T


class BehaviorSASRec(SASRec):
    """Behavior-aware SASRec: behaviors of the input tokens in the embedding (Eq. 9) AND the
    target behavior at the query, i.e. "which item next, under behavior b?".

    For position j of a causal window the target behavior is that of the next item,
    ``target_behaviors[:, j]``; for a prefix batch it is the row's ``target_behavior`` (the
    one its [mask] column carries). The query is

        q_j = h_j + MLP([h_j ; e_tgt(b_{j+1})]),   scores_j = q_j · E[1..N]^T

    with h_j the causal encoder state at j and e_tgt a target-behavior table of its own.

    NOTE: we inject the target behavior with an MLP on the concatenation [h; e_b] (residual on
    h), not by adding e_b to h: an added e_b only shifts every score by e_b·E[v], a per-behavior
    item bias independent of the history, while the MLP lets the behavior re-weight what the
    history says. The target behavior enters after the causal encoder, so the query at j
    still sees only the tokens up to j.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__(config, use_behavior=True)
        D = self.config.d_model
        self.target_behavior_embedding = nn.Embedding(self.config.n_behaviors + 1, D, padding_idx=0)
        self.query = nn.Sequential(nn.Linear(2 * D, D), nn.GELU(), nn.Linear(D, D))

    def target_query(self, h: torch.Tensor, target_behavior: torch.Tensor) -> torch.Tensor:
        """q = h + MLP([h; e_tgt(b)]): h (M, D) encoder states, target_behavior (M,) ids
        1..n_behaviors (0: none) -> queries (M, D), scored against the tied item table."""
        e = self.target_behavior_embedding(target_behavior)  # (M, D)
        return h + self.query(torch.cat([h, e], dim=-1))  # (M, D)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean next-item cross-entropy over all N items at positions with targets > 0, each
        position queried with the behavior of its target (a ``NextItemView`` batch)."""
        h = self.encoder(batch["items"], batch["behaviors"])  # (B, L, D)
        return masked_cross_entropy(h, batch["targets"], item_weight(self.encoder.item_embedding),
                                    query=self.target_query, condition=batch["target_behaviors"])

    def score_all(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
                  ) -> torch.Tensor:
        """Scores (B, N) of a prefix batch: the state at column L-2 (newest real item; causal
        attention keeps the [mask] column out of it) queried with the row's
        ``target_behavior``. ``generator`` is unused."""
        h = self.encoder(batch["items"], batch["behaviors"])  # (B, L, D)
        q = self.target_query(h[:, -2], batch["target_behavior"])  # (B, D)
        return q @ item_weight(self.encoder.item_embedding).T
