"""Torch views of the prepared sequences: Cloze (MBAE, Eq. 14), next-item and prefix batches.

Every view is a ``torch.utils.data.Dataset`` over *rows*; a row is two integers, its user
and where its window ends in the CSR arrays of :class:`~fatsmb_lib.data.preprocess.SequenceData`,
so a view holds O(rows) integers, never an (rows, L) matrix. A batch is gathered with one
index grid::

    idx = end[:, None] - L + arange(L)            # (B, L) positions, the most recent at L-1
    tokens = seq[idx] * (idx >= offsets[user])    # 0 (left padding) before the user's start

``__getitems__(indices)`` returns the whole batch as a dict of tensors (the DataLoader calls
it instead of ``__getitem__`` one by one), so :func:`make_loader` only needs an identity or
masking collate.

Views (batch keys as in the shared contract, ``fatsmb_lib.models.contract``):

- :class:`ClozeView` -- windows of length L over each TRAINING part, ending at the last
  training item and stepping back by ``window_stride`` (default L: non-overlapping windows;
  1: a window ending at every training item); masked by :class:`ClozeCollate` (rho, sigma).
  Its batches carry each row's ``user`` too, as prefix batches do.
- :class:`NextItemView` -- causal windows: inputs and targets shifted by one.
- :class:`PrefixView` -- one prediction per row: history, then the [mask] item carrying the
  target behavior (Algorithm 2's input); ``split`` = "train" (every training position),
  "valid" (second-last item) or "test" (last item, history includes the validation item).

Symbols: ``rho`` <-> ρ (item mask probability), ``sigma`` <-> σ (behavior mask probability at
a masked item), Section 3.1.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .preprocess import SequenceData

Batch = dict[str, torch.Tensor]


def _windows(end: np.ndarray, first_end: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-user window ends ``end, end - step, ...`` that stay above ``first_end``.

    Args: (n_users,) arrays. Returns (rows,) user index and (rows,) window end (exclusive).
    """
    n = np.maximum(-(-(end - first_end) // step), 0)           # ceil((end - first_end) / step)
    user = np.repeat(np.arange(len(end)), n)
    k = np.arange(len(user)) - np.repeat(np.cumsum(n) - n, n)  # rank of the window in its user
    return user, end[user] - k * step


class _CSRView(Dataset):
    """Rows are (user, end) pairs; a row's tokens are the last L before ``end`` (exclusive)
    that belong to its user. Subclasses set the rows and define ``__getitems__``."""

    def __init__(self, data: SequenceData, max_len: int, user: np.ndarray, end: np.ndarray
                 ) -> None:
        self.data, self.max_len = data, max_len
        self.seq_items = torch.from_numpy(data.seq_items)          # int32, shared, no copy
        self.seq_behaviors = torch.from_numpy(data.seq_behaviors)  # int8
        self.offsets = torch.from_numpy(data.offsets)
        self.user = torch.from_numpy(user.astype(np.int32))        # (rows,)
        self.end = torch.from_numpy(end.astype(np.int64))          # (rows,)

    def __len__(self) -> int:
        return len(self.end)

    def _rows(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.user[index].long(), self.end[index]             # (B,), (B,)

    def _gather(self, user: torch.Tensor, end: torch.Tensor, L: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded (B, L) items and behaviors at positions [offsets[user], end)."""
        idx = end[:, None] - L + torch.arange(L)                  # (B, L)
        real = idx >= self.offsets[user][:, None]                 # (B, L)
        idx = torch.where(real, idx, 0)
        return self.seq_items[idx].long() * real, self.seq_behaviors[idx].long() * real

    def __getitem__(self, index: int) -> Batch:
        """One row: the batched fetch of a single index, without the batch dimension."""
        return {k: v[0] for k, v in self.__getitems__([index]).items()}


class ClozeView(_CSRView):
    """Length-L windows over each user's training part, the newest ending at the last
    training item and each next one ``window_stride`` items earlier (None: L); the validation
    and test items are never included."""

    def __init__(self, data: SequenceData, max_len: int, window_stride: int | None = None) -> None:
        split = data.split()
        step = max_len if window_stride is None else window_stride
        if step < 1:
            raise ValueError(f"window_stride must be >= 1 (1 = every prefix), got {window_stride}")
        super().__init__(data, max_len, *_windows(split.train_end, split.train_start, step))

    def __getitems__(self, indices: list[int]) -> Batch:
        user, end = self._rows(indices)
        items, behaviors = self._gather(user, end, self.max_len)
        return {"items": items, "behaviors": behaviors, "user": user}


class NextItemView(_CSRView):
    """Causal windows over training parts: ``targets[:, j]`` is the item after ``items[:, j]``.

    Target windows end at the last training item and step back by L, so every training item
    but the first is a target exactly once.
    """

    def __init__(self, data: SequenceData, max_len: int = 50) -> None:
        split = data.split()
        super().__init__(data, max_len,
                         *_windows(split.train_end, split.train_start + 1, max_len))

    def __getitems__(self, indices: list[int]) -> Batch:
        user, end = self._rows(indices)
        items, behaviors = self._gather(user, end - 1, self.max_len)         # (B, L)
        targets, target_behaviors = self._gather(user, end, self.max_len)    # (B, L)
        real = items > 0                    # a user's first item is an input, never a target
        return {"items": items, "behaviors": behaviors, "targets": targets * real,
                "target_behaviors": target_behaviors * real}


class PrefixView(_CSRView):
    """One prediction per row: the last L-1 tokens before the target, then [mask].

    The last column holds the [mask] item ``N+1`` with the TARGET behavior, as in
    Algorithm 2 where the denoiser is conditioned on the behavior to recommend for.

    Args:
        split: "train" -- one row per training position i >= 1 of every user (history =
            the training tokens before i); "valid" -- one row per user, target = second-last
            interaction, history = training part; "test" -- target = last interaction,
            history = everything before it (including the validation item).
        per_user: with split="train", keep each user's ``per_user`` most recent training
            targets only (None: all); stages 2-3 use it to bound their cost.
    """

    def __init__(self, data: SequenceData, max_len: int = 50, split: str = "train",
                 per_user: int | None = None) -> None:
        parts = data.split()
        if split == "train":   # windows of one token: each training target after the first
            first = parts.train_start + 1
            if per_user is not None:                 # only the most recent `per_user` targets
                first = np.maximum(first, parts.train_end - per_user)
            user, end = _windows(parts.train_end, first, 1)
            target = end - 1
        elif split == "valid":
            user, target = np.arange(data.n_users), parts.train_end
        elif split == "test":
            user, target = np.arange(data.n_users), data.offsets[1:] - 1
        else:
            raise ValueError(f"split must be 'train', 'valid' or 'test', not {split!r}")
        super().__init__(data, max_len, user, target)    # history ends before the target
        self.split = split

    def __getitems__(self, indices: list[int]) -> Batch:
        user, target = self._rows(indices)                                      # (B,), (B,)
        items, behaviors = self._gather(user, target, self.max_len - 1)         # (B, L-1)
        target_item = self.seq_items[target].long()                             # (B,)
        target_behavior = self.seq_behaviors[target].long()                     # (B,)
        mask = torch.full_like(target_item, self.data.mask_item)
        return {"items": torch.cat([items, mask[:, None]], dim=1),              # (B, L)
                "behaviors": torch.cat([behaviors, target_behavior[:, None]], dim=1),
                "target": target_item, "target_behavior": target_behavior, "user": user}


class InteractionView(Dataset):
    """Every interaction of every training part, one per row: ``user`` (B,) its user index,
    ``target`` (B,) its item and ``target_behavior`` (B,) its behavior. The validation and
    test items are never rows."""

    def __init__(self, data: SequenceData) -> None:
        split = data.split()
        self.user = torch.from_numpy(split.train_users.astype(np.int64))       # (rows,)
        self.item = torch.from_numpy(split.train_items.astype(np.int64))       # (rows,)
        self.behavior = torch.from_numpy(split.train_behaviors.astype(np.int64))

    def __len__(self) -> int:
        return len(self.user)

    def __getitems__(self, indices: list[int]) -> Batch:
        index = torch.as_tensor(indices, dtype=torch.long)
        return {"user": self.user[index], "target": self.item[index],
                "target_behavior": self.behavior[index]}

    def __getitem__(self, index: int) -> Batch:
        return {k: v[0] for k, v in self.__getitems__([index]).items()}


def cloze_mask(items: torch.Tensor, behaviors: torch.Tensor, rho: float, sigma: float,
               mask_item: int, mask_behavior: int, generator: torch.Generator | None,
               last_only_prob: float) -> Batch:
    """The Cloze corruption of Section 3.1 (trained with Eq. 14), applied to a whole batch.

    Each real item is replaced by [mask] with probability ``rho`` (at least one per row);
    at a masked item the behavior is replaced by [mask] with probability ``sigma`` (those
    positions give z_∅, the others z_b). With probability ``last_only_prob`` a row instead
    masks only its last item (BERT4Rec's trick; 0 = the paper).

    Args:
        items, behaviors: (B, L) long, left-padded with 0.
    Returns:
        ``items``, ``behaviors`` (masked inputs), ``targets``, ``target_behaviors`` (the
        originals at masked positions, 0 elsewhere), ``behavior_masked`` (B, L) bool.
    """
    B, L = items.shape
    device = items.device
    real = items > 0                                                       # (B, L)
    masked = (torch.rand(B, L, generator=generator, device=device) < rho) & real
    last_only = torch.rand(B, generator=generator, device=device) < last_only_prob
    masked = torch.where(last_only[:, None], real & (torch.arange(L, device=device) == L - 1),
                         masked)
    # rows with nothing masked: mask one real item chosen uniformly
    pick = (torch.rand(B, L, generator=generator, device=device) * real).argmax(dim=1)  # (B,)
    empty = ~masked.any(dim=1) & real.any(dim=1)
    masked[empty, pick[empty]] = True
    behavior_masked = masked & (torch.rand(B, L, generator=generator, device=device) < sigma)
    return {
        "items": torch.where(masked, mask_item, items),
        "behaviors": torch.where(behavior_masked, mask_behavior, behaviors),
        "targets": torch.where(masked, items, 0),
        "target_behaviors": torch.where(masked, behaviors, 0),
        "behavior_masked": behavior_masked,
    }


class ClozeCollate:
    """DataLoader collate that masks a :class:`ClozeView` batch with :func:`cloze_mask`."""

    def __init__(self, rho: float, sigma: float, mask_item: int, mask_behavior: int,
                 generator: torch.Generator | None, last_only_prob: float) -> None:
        self.rho, self.sigma, self.last_only_prob = rho, sigma, last_only_prob
        self.mask_item, self.mask_behavior, self.generator = mask_item, mask_behavior, generator

    def __call__(self, batch: Batch) -> Batch:
        masked = cloze_mask(batch["items"], batch["behaviors"], self.rho, self.sigma,
                            self.mask_item, self.mask_behavior, self.generator, self.last_only_prob)
        return {**masked, "user": batch["user"]}  # whose rows they are (PBAT personalises)


def _identity(batch: Batch) -> Batch:
    return batch


def make_loader(view: Dataset, batch_size: int, shuffle: bool,
                generator: torch.Generator | None = None,
                collate: Callable[[Batch], Batch] | None = None) -> DataLoader:
    """A single-process DataLoader whose batches come from ``view.__getitems__``.

    It always has a generator of its own (an unseeded one when none is given): a DataLoader
    without one draws its base seed from torch's global generator on every iteration, which
    would let evaluation disturb training's random stream.
    """
    return DataLoader(view, batch_size=batch_size, shuffle=shuffle,
                      generator=generator if generator is not None else torch.Generator(),
                      collate_fn=collate or _identity, num_workers=0)
