"""What a model sees in each epoch: Cloze, next-item, prefix, interaction and tensor batches,
and the named Cloze recipes.

Each ``*_batches(ctx)`` returns a function of the epoch number, so ``fit`` can ask for any
epoch's batches after a resume; the shuffle and the Cloze masks come from the epoch's own
generator (``runtime.epoch_generator``). Beside each, ``*_settings(ctx)`` is what of the
profile shapes those batches: it goes into the checkpoint's digest.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch

from ..data.batches import (
    ClozeCollate,
    ClozeView,
    InteractionView,
    NextItemView,
    PrefixView,
    make_loader,
)
from ..support.runtime import epoch_generator
from .context import Context

Batches = Callable[[int], Iterator[dict]]  # epoch -> that epoch's batches

# Named bundles of Cloze-training fields (``open_run(recipe=...)``, ``mbstr_recipe``). The
# paper trains on non-overlapping windows with random Cloze masks (Sec. 3.1, Eq. 14); the study
# behind any other recipe is ``python -m fatsmb_lib.studies.recipes``.
RECIPES: dict[str, dict] = {
    # with its budget: an epoch of the paper's windows holds about 2,400 rows on ml100k (50
    # epochs: the earlier `default` profile's); one of a window at every item about 98,000
    "paper": dict(window_stride=None, last_only_prob=0.0, warmup_epochs=0, lr_decay="none",
                  stage1_epochs=50),
}


def cloze_settings(ctx: Context, sigma: float) -> dict:
    """What shapes a Cloze model's training data: masking, windows and batch size."""
    p = ctx.profile
    return {"rho": p.rho, "sigma": sigma, "last_only_prob": p.last_only_prob,
            "window_stride": p.window_stride, "batch_size": p.batch_size}


def cloze_batches(ctx: Context, sigma: float) -> Batches:
    """Cloze batches of every epoch (Section 3.1): windows of ``ClozeView`` masked by
    ``cloze_mask`` with the profile's ρ, ``sigma`` and last-item share, shuffled and masked
    by the epoch's own generator."""
    p = ctx.profile
    view = ClozeView(ctx.data, p.max_len, p.window_stride)

    def batches(epoch: int):
        generator = epoch_generator(ctx.seed, epoch)
        collate = ClozeCollate(p.rho, sigma, ctx.data.mask_item, ctx.data.mask_behavior,
                               generator, p.last_only_prob)
        return make_loader(view, p.batch_size, True, generator, collate)
    return batches


def next_item_settings(ctx: Context) -> dict:
    return {"batch_size": ctx.profile.batch_size}


def next_item_batches(ctx: Context) -> Batches:
    """Causal windows (``NextItemView``) of every epoch, shuffled by the epoch's generator."""
    view = NextItemView(ctx.data, ctx.profile.max_len)
    return lambda epoch: make_loader(view, ctx.profile.batch_size, True,
                                     epoch_generator(ctx.seed, epoch))


def prefix_settings(ctx: Context) -> dict:
    p = ctx.profile
    return {"batch_size": p.batch_size, "prefixes_per_user": p.prefixes_per_user}


def prefix_batches(ctx: Context) -> Batches:
    """Every training prefix with its next item (each user's ``prefixes_per_user`` most recent),
    shuffled by the epoch's generator."""
    p = ctx.profile
    view = PrefixView(ctx.data, p.max_len, "train", p.prefixes_per_user)
    return lambda epoch: make_loader(view, p.batch_size, True, epoch_generator(ctx.seed, epoch))


def interaction_settings(ctx: Context, batch_size: int) -> dict:
    """What shapes :func:`interaction_batches` (for the checkpoint's digest): the batch size."""
    return {"batch_size": batch_size}


def interaction_batches(ctx: Context, batch_size: int) -> Batches:
    """Every training interaction (``InteractionView``: user, item, behavior) in batches of
    ``batch_size`` (the graph models' own: each step propagates over the whole graph),
    shuffled by the epoch's generator."""
    view = InteractionView(ctx.data)
    return lambda epoch: make_loader(view, batch_size, True, epoch_generator(ctx.seed, epoch))


def tensor_batches(tensors: dict[str, torch.Tensor], batch_size: int,
                   generator: torch.Generator) -> Iterator[dict]:
    """Shuffled mini-batches of equally long tensors (already on the device)."""
    n = len(next(iter(tensors.values())))
    order = torch.randperm(n, generator=generator).to(next(iter(tensors.values())).device)
    for start in range(0, n, batch_size):
        index = order[start:start + batch_size]
        yield {key: value[index] for key, value in tensors.items()}
