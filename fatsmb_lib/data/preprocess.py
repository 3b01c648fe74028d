"""From raw interactions to dense ids, time-ordered sequences and the leave-one-out split.

Recipe (version :data:`RECIPE_VERSION`; bump it whenever the output could change):

1. drop users with fewer than ``min_uc`` interactions (3 = one training item, plus
   validation and test), and say so: how many users, interactions and items went (a
   :class:`~fatsmb_lib.data.readers.DataWarning`, also kept in ``SequenceData.notes``). Negative
   integer ids are kept (ids are only keys) but reported the same way, since exports often
   use -1 for "unknown";
2. dense ids by sorted raw key: users 0..n_users-1, items 1..N (0 = padding, N+1 = [mask]);
   behaviors keep the dataset's order 1..n_behaviors (n_behaviors+1 = [mask]);
3. order each user's interactions by (timestamp, item raw key) -- numeric order when keys
   are numbers. Ties are common (in ml100k 415 of 943 users share their last timestamp with
   another interaction), so this tie-break decides the test item: never change it;
4. leave-one-out by time (Section 4.1.1): test = last interaction (its behavior is the
   target behavior), validation = second-last, training = the rest.

NOTE: the authors' code keeps each user's interactions in file order and maps ids through
Python sets (whose order varies between runs); we sort by (timestamp, item) and use sorted
keys so the split is reproducible.

Sequences are stored CSR-style: user ``u``'s interactions are
``seq_items[offsets[u]:offsets[u+1]]``.
:func:`load_dataset` caches the arrays as an ``.npz`` keyed by a fingerprint of the raw file
and the options, so a second load takes milliseconds. Reading a cache recomputes the data
fingerprint and a checksum of every stored array, so a cache damaged or edited by hand is
rebuilt rather than trusted.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm  # plain bars: no ipywidgets needed in notebooks

from ..support.checkpoints import atomic_write
from ..support.paths import data_folder
from . import datasets
from .readers import DataError, DataWarning, Interactions

RECIPE_VERSION = 1
CACHE_FORMAT = 2  # 2: the cache stores a checksum of its arrays (older files are not read)
# The fewest users and items a run evaluates on (check_evaluable): every model ranks all N
# items and is scored on its top K <= 20, so with N <= 20 every item is in every top 20
# (Recall@20 = 1.0 for any model) and a random ranking scores K/N; 100 items keep that chance
# level at or below 0.2. One user moves a metric by 1/n_users: 50 users keep it at 2 points.
MIN_USERS, MIN_ITEMS = 50, 100


@dataclass
class Split:
    """The leave-one-out split of a :class:`SequenceData` (all arrays indexed by user).

    The training part of user ``u`` is ``seq_*[train_start[u]:train_end[u]]``; the flat
    ``train_*`` arrays concatenate those parts (for counting, e.g. popularity or entropy).
    """

    train_start: np.ndarray    # (n_users,) int64
    train_end: np.ndarray      # (n_users,) int64, exclusive; = index of the validation item
    train_items: np.ndarray    # (n_train,) item ids of all training parts
    train_behaviors: np.ndarray
    train_users: np.ndarray    # (n_train,) user index of each training interaction
    valid_items: np.ndarray    # (n_users,) second-last item
    valid_behaviors: np.ndarray
    test_items: np.ndarray     # (n_users,) last item
    test_behaviors: np.ndarray


@dataclass
class SequenceData:
    """Every user's time-ordered multi-behavior sequence, with dense ids.

    Attributes:
        behavior_names: behavior id ``b`` is named ``behavior_names[b - 1]``.
        item_keys: (N,) raw item key of internal item id ``i`` at index ``i - 1``.
        item_titles: titles with the same indexing as ``item_keys``, or None.
        user_keys: (n_users,) raw user key of user index ``u``.
        offsets: (n_users + 1,) int64 CSR offsets into the ``seq_*`` arrays.
        seq_items: (n_interactions,) int32 item ids in 1..N.
        seq_behaviors: (n_interactions,) int8 behavior ids in 1..n_behaviors.
        fingerprint: hash of the arrays above and the recipe version (identifies the data).
        source: where the raw data came from.
        notes: what preprocessing removed or noticed (rows dropped by ``min_uc``, negative
            ids), one sentence each; :func:`prepare` and :func:`load_dataset` warn them.
    """

    behavior_names: tuple[str, ...]
    item_keys: np.ndarray
    item_titles: list[str] | None
    user_keys: np.ndarray
    offsets: np.ndarray
    seq_items: np.ndarray
    seq_behaviors: np.ndarray
    fingerprint: str
    source: str = ""
    notes: tuple[str, ...] = ()
    _split: Split | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def n_users(self) -> int:
        return len(self.user_keys)

    @property
    def n_items(self) -> int:
        """N: items are 1..N."""
        return len(self.item_keys)

    @property
    def n_behaviors(self) -> int:
        return len(self.behavior_names)

    @property
    def mask_item(self) -> int:
        return self.n_items + 1

    @property
    def mask_behavior(self) -> int:
        return self.n_behaviors + 1

    @property
    def lengths(self) -> np.ndarray:
        """(n_users,) sequence length per user."""
        return np.diff(self.offsets)

    def split(self) -> Split:
        """Leave-one-out by time: training = all but the last 2, validation = second-last,
        test = last. Computed on the first call, then reused (the arrays never change)."""
        if self._split is None:
            self._split = self._compute_split()
        return self._split

    def _compute_split(self) -> Split:
        start, last = self.offsets[:-1], self.offsets[1:] - 1
        end = last - 1
        train_len = end - start
        train_users = np.repeat(np.arange(self.n_users), train_len)
        # index of each training interaction: its part's start plus its rank inside the part
        first = np.cumsum(train_len) - train_len
        within = np.arange(len(train_users)) - np.repeat(first, train_len)
        idx = start[train_users] + within
        return Split(
            train_start=start, train_end=end,
            train_items=self.seq_items[idx], train_behaviors=self.seq_behaviors[idx],
            train_users=train_users,
            valid_items=self.seq_items[end], valid_behaviors=self.seq_behaviors[end],
            test_items=self.seq_items[last], test_behaviors=self.seq_behaviors[last])


def _fingerprint(*parts: object) -> str:
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        h.update(part.tobytes() if isinstance(part, np.ndarray) else repr(part).encode())
    return h.hexdigest()


def _dense(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes 0..K-1 in sorted-key order, and the sorted unique keys (a hash table, not a sort
    of all n keys: pandas.factorize sorts only the K uniques)."""
    codes, uniques = pd.factorize(keys, sort=True)
    uniques = np.asarray(uniques)
    return codes.astype(np.int64), (uniques.astype(str) if uniques.dtype == object else uniques)


def data_fingerprint(data: SequenceData) -> str:
    """The hash that identifies prepared data: the recipe version, the behavior names and the
    arrays that define the sequences (checkpoints record it)."""
    return _fingerprint(RECIPE_VERSION, tuple(data.behavior_names), data.item_keys, data.offsets,
                        data.seq_items, data.seq_behaviors)


def _negative_ids(interactions: Interactions) -> list[str]:
    notes = []
    for what, keys in (("user", interactions.users), ("item", interactions.items)):
        if keys.dtype.kind in "iu" and (negative := keys < 0).any():
            notes.append(
                f"{int(negative.sum())} interaction(s) have a negative {what} id (smallest "
                f"{int(keys.min())}); the rule keeps them as ordinary ids. If a negative id marks "
                f"a missing value in your export (e.g. -1 = anonymous), remove those rows first.")
    return notes


def prepare(interactions: Interactions, min_uc: int = 3) -> SequenceData:
    """Filter, densify, order and store the sequences (recipe in the module docstring).

    Warns (:class:`~fatsmb_lib.data.readers.DataWarning`) how many rows each rule removed or
    flagged; the same sentences are kept in ``SequenceData.notes``.
    """
    assert min_uc >= 3, "min_uc must be >= 3: each user needs training, validation and test items"
    if len(interactions) == 0:
        raise DataError(f"{interactions.source}: no interactions to prepare. Check the file.")
    notes = list(interactions.notes) + _negative_ids(interactions)
    user_of, _ = _dense(interactions.users)
    counts = np.bincount(user_of)
    keep = counts[user_of] >= min_uc
    if not keep.any():
        raise DataError(
            f"{interactions.source}: the filter min_uc={min_uc} removed every user (the longest "
            f"of {len(counts)} users has {counts.max()} interactions). Lower min_uc (>= 3) "
            f"or add data.")
    user_idx, user_keys = _dense(interactions.users[keep])
    item_idx, item_keys = _dense(interactions.items[keep])
    if not keep.all():
        lost_items = len(pd.unique(interactions.items)) - len(item_keys)
        notes.append(
            f"the rule min_uc={min_uc} dropped {len(counts) - len(user_keys)} of {len(counts)} "
            f"users with fewer than {min_uc} interactions ({int((~keep).sum())} of "
            f"{len(keep)} interactions; {lost_items} item(s) seen only by them): every user "
            f"needs a training, a validation and a test interaction.")
    behaviors, times = interactions.behaviors[keep], interactions.timestamps[keep]
    item_ids = item_idx + 1                         # 1..N, monotone in the raw key
    # sort by user, then timestamp, then item raw key (lexsort: last key is primary)
    order = np.lexsort((item_ids, times, user_idx))
    offsets = np.zeros(len(user_keys) + 1, dtype=np.int64)
    np.cumsum(np.bincount(user_idx, minlength=len(user_keys)), out=offsets[1:])
    seq_items = item_ids[order].astype(np.int32)
    seq_behaviors = behaviors[order].astype(np.int8)
    titles = None
    if interactions.item_titles is not None:
        titles = [interactions.item_titles.get(k, "") for k in item_keys.tolist()]
    data = SequenceData(
        behavior_names=tuple(interactions.behavior_names), item_keys=item_keys,
        item_titles=titles, user_keys=user_keys, offsets=offsets, seq_items=seq_items,
        seq_behaviors=seq_behaviors, fingerprint="", source=interactions.source,
        notes=tuple(notes))
    data.fingerprint = data_fingerprint(data)
    report(data, stacklevel=3)
    return data


def check_evaluable(data: SequenceData, dataset: str) -> None:
    """Refuse data too small to rank models on (:data:`MIN_USERS`, :data:`MIN_ITEMS`): raise
    ``DataError`` saying what the floor protects against and what to do."""
    short = []
    if data.n_users < MIN_USERS:
        short.append(f"{data.n_users} users (at least {MIN_USERS}: one user moves every metric "
                     f"by 1/{data.n_users} = {1 / data.n_users:.0%})")
    if data.n_items < MIN_ITEMS:
        short.append(f"{data.n_items} items (at least {MIN_ITEMS}: every model ranks all items "
                     f"and is scored on its top 10 and 20, so with {data.n_items} items a random "
                     f"ranking scores Recall@20 = {min(20 / data.n_items, 1):.2f}"
                     + (", and every model 1.0" if data.n_items <= 20 else "") + ")")
    if short:
        raise DataError(
            f"{dataset} ({data.source}) is too small to evaluate: after preprocessing it has "
            f"{' and '.join(short)}. Add interactions (each user needs at least 3), or try the "
            f"course on synthetic-tiny (200 users, about 300 items).")


def subsample(data: SequenceData, max_users: int | None = None,
              max_history: int | None = None) -> SequenceData:
    """A smaller copy: at most ``max_users`` users (a fixed random sample, the same for every
    seed) with their ``max_history`` most recent interactions each; items that no longer occur
    are dropped and ids made dense again, keeping the order of their raw keys (so each
    sequence's order and split are what :func:`prepare` would give on those rows). Returns
    ``data`` itself when neither cap binds; otherwise a note says what was kept."""
    lengths = data.lengths
    users = np.arange(data.n_users)
    if max_users is not None and data.n_users > max_users:
        users = np.sort(np.random.default_rng(0).choice(data.n_users, max_users, replace=False))
    keep_len = lengths[users] if max_history is None else np.minimum(lengths[users], max_history)
    if len(users) == data.n_users and (keep_len == lengths).all():
        return data
    starts = data.offsets[1:][users] - keep_len          # the most recent keep_len of each
    rows = np.repeat(starts - np.cumsum(keep_len) + keep_len, keep_len) + np.arange(keep_len.sum())
    kept_items = np.unique(data.seq_items[rows])          # old ids, sorted = raw-key order
    new_id = np.zeros(data.n_items + 2, dtype=np.int32)
    new_id[kept_items] = np.arange(1, len(kept_items) + 1, dtype=np.int32)
    offsets = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(keep_len, out=offsets[1:])
    caps = ", ".join(filter(None, (
        f"{len(users):,} of {data.n_users:,} users sampled (max_users={max_users})"
        if len(users) < data.n_users else "",
        f"{int((lengths[users] > keep_len).sum()):,} users cut to their {max_history} most "
        f"recent interactions (max_history={max_history})"
        if (lengths[users] > keep_len).any() else "")))
    note = (f"this profile caps the data: {caps}; {int(keep_len.sum()):,} of "
            f"{int(lengths.sum()):,} interactions and {len(kept_items):,} of {data.n_items:,} "
            f"items kept. Results describe this sample; the default profile uses every user.")
    small = SequenceData(
        behavior_names=data.behavior_names, item_keys=data.item_keys[kept_items - 1],
        item_titles=None if data.item_titles is None else
        [data.item_titles[i - 1] for i in kept_items.tolist()],
        user_keys=data.user_keys[users], offsets=offsets,
        seq_items=new_id[data.seq_items[rows]], seq_behaviors=data.seq_behaviors[rows],
        fingerprint="", source=data.source, notes=(*data.notes, note))
    small.fingerprint = data_fingerprint(small)
    warnings.warn(f"{data.source}: {note}", DataWarning, stacklevel=2)
    return small


def drop_behavior(data: SequenceData, behavior: str, share: float, seed: int = 0) -> SequenceData:
    """The few-shot copy of Fig. 7: ``share`` of ``behavior``'s TRAINING interactions removed.

    Which ones go is a fixed random order of that behavior's training interactions (drawn from
    ``seed``; the first ``round(share * count)`` go), so the sets dropped at growing shares are
    nested and a curve over shares changes one thing. Every user's validation and test
    interactions stay as they are (the prediction data are kept, as in the paper), and so do
    item ids. A user whose training part would be left empty keeps its most recent training
    interaction (the note counts them). ``share`` 0 returns ``data`` itself; 1 is zero-shot.
    """
    if behavior not in data.behavior_names:
        raise ValueError(f"behavior {behavior!r} is not one of {data.behavior_names}")
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share={share} must lie in [0, 1] (the part of {behavior!r}'s "
                         f"training interactions to drop)")
    if share == 0.0:
        return data
    start, end = data.split().train_start, data.split().train_end     # (n_users,) each
    user = np.repeat(np.arange(data.n_users), data.lengths)          # (n_interactions,)
    in_train = np.arange(len(user)) < end[user]                      # before validation
    code = data.behavior_names.index(behavior) + 1
    candidates = np.flatnonzero(in_train & (data.seq_behaviors == code))
    order = np.random.default_rng(seed).permutation(len(candidates))
    drop = np.zeros(len(data.seq_items), dtype=bool)
    drop[candidates[order[:round(share * len(candidates))]]] = True
    emptied = np.flatnonzero((end - start > 0)
                             & (np.bincount(user[in_train & ~drop], minlength=data.n_users) == 0))
    drop[end[emptied] - 1] = False                                    # keep their most recent
    keep = ~drop
    offsets = np.zeros_like(data.offsets)
    np.cumsum(np.bincount(user[keep], minlength=data.n_users), out=offsets[1:])
    note = (f"few-shot: {int(drop.sum()):,} of {len(candidates):,} training interactions of "
            f"{behavior!r} dropped (share {share}, seed {seed})"
            + (f"; {len(emptied)} user(s) keep their last one, which was all their training "
               f"part" if len(emptied) else "") + "; validation and test untouched")
    fewer = SequenceData(
        behavior_names=data.behavior_names, item_keys=data.item_keys,
        item_titles=data.item_titles, user_keys=data.user_keys, offsets=offsets,
        seq_items=data.seq_items[keep], seq_behaviors=data.seq_behaviors[keep],
        fingerprint="", source=data.source, notes=(*data.notes, note))
    fewer.fingerprint = data_fingerprint(fewer)
    return fewer


def report(data: SequenceData, stacklevel: int = 2) -> None:
    """Warn each of ``data.notes`` (rows a rule dropped or flagged) as a DataWarning."""
    for note in data.notes:
        warnings.warn(f"{data.source}: {note}", DataWarning, stacklevel=stacklevel)


# --------------------------------------------------------------------------- cache

def cache_key(dataset: str, data_dir: str | Path | None = None, min_uc: int = 3,
              synthetic_seed: int = 0) -> str:
    """Key of the cached arrays: the raw data's identity plus every option of the recipe."""
    source = datasets.source_identity(dataset, data_dir, synthetic_seed)
    options = {"dataset": dataset, "min_uc": min_uc, "recipe": RECIPE_VERSION, "source": source,
               "format": CACHE_FORMAT}
    return _fingerprint(json.dumps(options, sort_keys=True))


def _as_storable(keys: np.ndarray) -> np.ndarray:
    """np.savez without pickles: object arrays of strings become fixed-width unicode."""
    return keys.astype(str) if keys.dtype == object else keys


def _stored_arrays(data: SequenceData) -> dict[str, np.ndarray]:
    """The arrays a cache file holds besides its metadata."""
    return {"item_keys": _as_storable(data.item_keys),
            "item_titles": np.array(data.item_titles or [], dtype=str),
            "user_keys": _as_storable(data.user_keys), "offsets": data.offsets,
            "seq_items": data.seq_items, "seq_behaviors": data.seq_behaviors}


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    return _fingerprint(*(part for name in sorted(arrays) for part in (name, arrays[name])))


def save_cache(data: SequenceData, path: Path) -> None:
    """Write ``data`` to ``path`` atomically (``checkpoints.atomic_write``), with a checksum
    of its arrays."""
    arrays = _stored_arrays(data)
    meta = {"behavior_names": list(data.behavior_names), "fingerprint": data.fingerprint,
            "source": data.source, "has_titles": data.item_titles is not None,
            "notes": list(data.notes), "checksum": _checksum(arrays)}
    atomic_write(path, lambda f: np.savez(f, meta=np.array(json.dumps(meta)), **arrays))


def read_cache(path: Path) -> SequenceData:
    """Read a cache written by :func:`save_cache`. Raises on a missing or damaged file, and
    ``DataError`` when the arrays do not match the checksum and fingerprint stored with them
    (a file edited by hand)."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        arrays = {name: z[name] for name in z.files if name != "meta"}
    if _checksum(arrays) != meta.get("checksum"):
        raise DataError("its arrays do not match the checksum stored with them (edited or "
                        "damaged)")
    data = SequenceData(
        behavior_names=tuple(meta["behavior_names"]), item_keys=arrays["item_keys"],
        item_titles=arrays["item_titles"].tolist() if meta["has_titles"] else None,
        user_keys=arrays["user_keys"], offsets=arrays["offsets"], seq_items=arrays["seq_items"],
        seq_behaviors=arrays["seq_behaviors"], fingerprint=meta["fingerprint"],
        source=meta["source"], notes=tuple(meta.get("notes", ())))
    if data_fingerprint(data) != data.fingerprint:
        raise DataError("its arrays do not match the data fingerprint stored with them "
                        "(edited or damaged)")
    return data


def load_dataset(dataset: str, data_dir: str | Path | None = None, cache_dir: str | Path | None = None,
                 min_uc: int = 3, synthetic_seed: int = 0, progress: bool = False) -> SequenceData:
    """Read (or reuse from the cache) a named dataset, prepared by :func:`prepare`.

    Args:
        dataset: one of ``datasets.KNOWN_DATASETS``, or a name registered in ``data_dir``
            (``<data_dir>/<name>.dataset.json``, see :func:`fatsmb_lib.data.datasets.register`).
        data_dir: where ``yelp.txt`` / ``retail.txt`` / ``ijcai.txt`` and registered files live.
        cache_dir: where prepared arrays are cached; None -> ``<data_dir>/.cache``.
        min_uc: minimum interactions per user.
        synthetic_seed: seed of the synthetic generator (synthetic datasets only).
        progress: show a progress bar over the stages.
    """
    cache_dir = data_folder(data_dir) / ".cache" if cache_dir is None else Path(cache_dir)
    path = cache_dir / f"{dataset}-{cache_key(dataset, data_dir, min_uc, synthetic_seed)}.npz"
    with tqdm(total=3, desc=dataset, disable=not progress) as bar:
        if path.is_file():
            try:
                data = read_cache(path)
                bar.update(3)
                report(data, stacklevel=3)   # what the rules dropped, as on the first load
                return data
            except Exception as exc:  # any damage: the cache is only a copy, so rebuild it
                warnings.warn(f"ignoring unreadable cache {path} ({exc}); rebuilding it",
                              stacklevel=2)
        bar.set_postfix_str("reading")
        interactions = datasets.load_interactions(dataset, data_dir, synthetic_seed)
        bar.update()
        bar.set_postfix_str("preparing")
        data = prepare(interactions, min_uc)
        bar.update()
        bar.set_postfix_str("caching")
        try:
            save_cache(data, path)
        except OSError as exc:
            warnings.warn(f"could not write the cache {path} ({exc}); the data are fine, "
                          f"but the next load will re-read the raw file", stacklevel=2)
        bar.update()
    return data


def stats(data: SequenceData) -> dict:
    """Size, per-behavior counts (by name), sequence lengths and density."""
    lengths = data.lengths
    counts = np.bincount(data.seq_behaviors, minlength=data.n_behaviors + 1)[1:]
    return {
        "users": data.n_users,
        "items": data.n_items,
        "interactions": int(lengths.sum()),
        "behaviors": dict(zip(data.behavior_names, counts.tolist())),
        "mean_length": float(lengths.mean()),
        "median_length": float(np.median(lengths)),
        "density": float(lengths.sum() / (data.n_users * data.n_items)),
    }
