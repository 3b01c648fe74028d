"""The one contract every model keeps (FatsMB and each baseline), its batch vocabulary, and the
pieces every model shares: the tied item table, the masked cross-entropy over all items and
the initialisation.

A model is a :class:`Recommender`: ``loss(batch)`` trains it, ``score_all(batch)`` ranks all
items, so training and evaluation need no per-model special cases.

Batch vocabulary (the keys every model reads; ``fatsmb_lib.data.batches`` writes them):

    items, behaviors                (B, L)  the input sequence, left-padded with 0; items 1..N
                                            (N+1 [mask]), behaviors 1..n_behaviors
                                            (n_behaviors+1 [mask])
    targets, target_behaviors       (B, L)  a target per position, 0 = no target: Cloze batches
                                            (the masked item and its behavior) and next-item
                                            batches (the next item and its behavior)
    target, target_behavior         (B,)    one target per row: prefix batches (history, then
                                            [mask] carrying the target behavior) and latent
                                            batches
    z_b, z_null                     (B, D)  latent batches: z_b and z_∅ at a prefix's [mask]
    user                            (B,)    each row's user, 0..n_users-1: Cloze and prefix
                                            batches (read by the personalised models: PBAT)

Which kind of batch a model's ``loss`` takes is in its docstring; ``score_all`` always takes a
prefix batch.

Shapes: B batch, L sequence length, D model width, N items, M rows with a target.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from ..data.batches import Batch
from .kernels import linear_cross_entropy, target_rows


@runtime_checkable
class Recommender(Protocol):
    """What training and evaluation call on every model."""

    def loss(self, batch: Batch) -> torch.Tensor:
        """The training loss of one batch of the model's kind: a scalar with gradients. A model
        fitted without gradients (Pop, by counting) raises NotImplementedError."""

    def score_all(self, batch: Batch, generator: torch.Generator | None = None) -> torch.Tensor:
        """Scores (B, N) of items 1..N (column j is item id j+1) for each row of a prefix batch,
        under its ``target_behavior``. A sampling model draws from ``generator`` only."""


def item_weight(embedding: nn.Embedding) -> torch.Tensor:
    """The tied output table: the rows of items 1..N, (N, D), of an item embedding laid out as
    every model's is (row 0 padding, rows 1..N the items, row N+1 [mask]). A view: gradients of
    the scores reach the embedding."""
    return embedding.weight[1:-1]


def masked_cross_entropy(
    h: torch.Tensor,
    targets: torch.Tensor,
    items: torch.Tensor,
    query: Callable[..., torch.Tensor] | None = None,
    condition: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean softmax cross-entropy over all N items at the positions with a target:

        loss = (1/M) Σ_{j: targets_j > 0} −log softmax(query(h_j) · itemsᵀ + bias)[targets_j]

    h (..., D) states and targets (...) item ids with 0 = no target (Cloze, next-item: (B, L, D)
    and (B, L); one target per row: (B, D) and (B,)); items (N, D) the tied table
    (:func:`item_weight`); ``query`` the model's per-row transform of the selected states (None:
    identity), called as ``query(z)`` or, with ``condition`` (...) given, as ``query(z, c)``
    with c its entries at the same positions (e.g. each target's behavior); ``bias`` (N,) or
    None. A batch without targets gives 0, still connected to the graph.

    Only the rows with a target are transformed and scored (:func:`~.kernels.target_rows`), and
    their (M, N) logits are never formed (:func:`~.kernels.linear_cross_entropy`).
    """
    index, target = target_rows(targets)  # (M',), (M',): M rows with a target, then padding
    z = h.flatten(0, -2)[index]  # (M', D)
    if query is not None:
        z = query(z) if condition is None else query(z, condition.flatten()[index])
    return linear_cross_entropy(z, items, bias, target) / (targets > 0).sum().clamp(min=1)


def init_weights(module: nn.Module) -> None:
    """BERT-style initialisation: N(0, 0.02) weights, zero biases (padding rows stay zero)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.trunc_normal_(module.weight, std=0.02, a=-0.04, b=0.04)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.Embedding) and module.padding_idx is not None:
        with torch.no_grad():
            module.weight[module.padding_idx].zero_()
