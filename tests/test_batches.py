"""Torch views: windows, leakage, left padding, the prefix mask column, Cloze masking rates."""
import math

import numpy as np
import pytest
import torch

from fatsmb_lib.data.batches import (
    ClozeCollate,
    ClozeView,
    NextItemView,
    PrefixView,
    cloze_mask,
    make_loader,
)
from fatsmb_lib.data.preprocess import prepare
from fatsmb_lib.data.readers import Interactions

L = 5
LENGTHS = [3, 4, 7, 12, 13, 6]   # training parts 1, 2, 5, 10, 11, 4 -> 1 to 3 windows of L=5


@pytest.fixture(scope="module")
def data():
    """Every interaction has its own item id, increasing in time, so a row's real tokens
    must be consecutive ids and any leak of a validation/test item is visible; the behavior
    is a function of the item (item % 4 + 1) so mismatched gathers show too."""
    users = np.repeat(np.arange(len(LENGTHS)), LENGTHS)
    items = np.arange(1, len(users) + 1)
    times = np.arange(len(users))
    backwards = slice(None, None, -1)                    # rows given newest first: prepare sorts
    rows = Interactions(users=users[backwards], items=items[backwards],
                        behaviors=(items % 4 + 1)[backwards].astype(np.int64),
                        timestamps=times[backwards], behavior_names=("pv", "fav", "cart", "buy"))
    data = prepare(rows)
    assert np.array_equal(data.seq_items, items)         # raw ids 1.. are dense ids 1..
    return data


def held_out(data):
    s = data.split()
    return set(s.valid_items.tolist()), set(s.test_items.tolist())


def everything(view):
    return view.__getitems__(list(range(len(view))))


def assert_left_padded(items, behaviors):
    real = items > 0
    assert (real[:, 1:] >= real[:, :-1]).all(), "padding must be a prefix of each row"
    assert torch.equal(behaviors > 0, real)
    assert torch.equal(behaviors[real], items[real] % 4 + 1), "behavior gathered with its item"


def assert_consecutive(row):
    real = row[row > 0]
    assert (real.diff() == 1).all(), f"row is not one time-ordered slice: {row}"


def test_cloze_windows_cover_each_training_token_once(data):
    view = ClozeView(data, max_len=L)
    batch = everything(view)
    train_len = np.array(LENGTHS) - 2
    assert len(view) == sum(math.ceil(t / L) for t in train_len)
    assert batch["items"].shape == (len(view), L)
    assert_left_padded(batch["items"], batch["behaviors"])
    for row, user in zip(batch["items"], batch["user"]):
        assert_consecutive(row)
        own = data.seq_items[data.offsets[user]:data.offsets[user + 1]]
        assert set(row[row > 0].tolist()) <= set(own.tolist()), "a row's user is its owner"
    tokens = batch["items"][batch["items"] > 0]
    assert sorted(tokens.tolist()) == sorted(data.split().train_items.tolist())
    valid, test = held_out(data)
    assert not (set(tokens.tolist()) & (valid | test))


def test_next_item_targets_are_shifted_inputs(data):
    view = NextItemView(data, max_len=L)
    b = everything(view)
    assert_left_padded(b["items"], b["behaviors"])
    assert_left_padded(b["targets"], b["target_behaviors"])
    real = b["items"] > 0
    assert torch.equal(b["targets"] > 0, real)
    assert torch.equal(b["targets"][real], b["items"][real] + 1)   # the next interaction
    s = data.split()
    first = set(data.seq_items[data.offsets[:-1]].tolist())
    expected = set(s.train_items.tolist()) - first       # every training item but each user's first
    assert sorted(b["targets"][real].tolist()) == sorted(expected)
    valid, test = held_out(data)
    seen = set(b["items"][real].tolist()) | set(b["targets"][real].tolist())
    assert not (seen & (valid | test))


def check_prefix(view, data, b):
    assert b["items"].shape == (len(view), L) and b["target"].shape == (len(view),)
    assert (b["items"][:, -1] == data.mask_item).all()
    assert torch.equal(b["behaviors"][:, -1], b["target_behavior"])
    assert torch.equal(b["target_behavior"], b["target"] % 4 + 1)
    history = b["items"][:, :-1]
    assert_left_padded(history, b["behaviors"][:, :-1])
    assert torch.equal(history[:, -1], b["target"] - 1)      # the interaction just before
    start = torch.from_numpy(data.offsets[:-1])[b["user"]] + 1  # first item id of the user
    n_real = (history > 0).sum(dim=1)
    assert torch.equal(n_real, torch.minimum(b["target"] - start, torch.tensor(L - 1)))


def test_prefix_train_rows(data):
    view = PrefixView(data, max_len=L, split="train")
    b = everything(view)
    assert len(view) == sum(t - 1 for t in np.array(LENGTHS) - 2)
    check_prefix(view, data, b)
    valid, test = held_out(data)
    assert not (set(b["items"].flatten().tolist()) & (valid | test))
    assert not (set(b["target"].tolist()) & (valid | test))


def test_prefix_valid_and_test_rows(data):
    valid, test = held_out(data)
    v = everything(PrefixView(data, max_len=L, split="valid"))
    check_prefix(PrefixView(data, max_len=L, split="valid"), data, v)
    assert set(v["target"].tolist()) == valid and torch.equal(v["user"], torch.arange(data.n_users))
    assert not (set(v["items"].flatten().tolist()) & (valid | test))
    t = everything(PrefixView(data, max_len=L, split="test"))
    check_prefix(PrefixView(data, max_len=L, split="test"), data, t)
    assert set(t["target"].tolist()) == test
    assert set(t["items"][:, -2].tolist()) == valid          # history ends with the validation item
    assert not (set(t["items"].flatten().tolist()) & test)
    with pytest.raises(ValueError, match="split must be"):
        PrefixView(data, split="dev")


@pytest.mark.parametrize("make", [lambda d: ClozeView(d, L), lambda d: NextItemView(d, L),
                                  lambda d: PrefixView(d, L, "train"),
                                  lambda d: PrefixView(d, L, "test")])
def test_getitems_equals_stacked_getitem(data, make):
    view = make(data)
    indices = [len(view) - 1, 0, 2, 2]
    batch = view.__getitems__(indices)
    for key, value in batch.items():
        assert torch.equal(value, torch.stack([view[i][key] for i in indices])), key


def test_make_loader_covers_every_row_reproducibly(data):
    view = PrefixView(data, max_len=L, split="train")

    def epoch(seed):
        loader = make_loader(view, batch_size=4, shuffle=True,
                             generator=torch.Generator().manual_seed(seed))
        return torch.cat([b["target"] for b in loader])
    a, b = epoch(0), epoch(0)
    assert torch.equal(a, b) and not torch.equal(a, epoch(1))
    assert sorted(a.tolist()) == sorted(everything(view)["target"].tolist())


def test_cloze_loader_masks(data):
    view = ClozeView(data, max_len=L)
    collate = ClozeCollate(0.5, 0.5, data.mask_item, data.mask_behavior,
                           torch.Generator().manual_seed(0), 0.0)
    batch = next(iter(make_loader(view, batch_size=len(view), shuffle=False, collate=collate)))
    assert set(batch) == {"items", "behaviors", "targets", "target_behaviors", "behavior_masked",
                          "user"}
    raw = everything(view)
    assert torch.equal(batch["user"], raw["user"])
    masked = batch["targets"] > 0
    assert torch.equal(batch["targets"][masked], raw["items"][masked])
    assert (batch["items"][masked] == data.mask_item).all()
    assert torch.equal(batch["items"][~masked], raw["items"][~masked])


# --------------------------------------------------------------------------- cloze_mask

def full_rows(B, L, n_items=100, n_behaviors=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, n_items + 1, (B, L), generator=g)
    return items, items % n_behaviors + 1


def within_3_std(hits, n, p):
    return abs(hits - n * p) <= 3 * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("rho, sigma", [(0.2, 0.1), (0.5, 0.8)])
def test_cloze_mask_rates_and_targets(rho, sigma):
    items, behaviors = full_rows(2000, 50)
    out = cloze_mask(items, behaviors, rho, sigma, 101, 5, torch.Generator().manual_seed(1), 0.0)
    masked = out["targets"] > 0
    n_masked = int(masked.sum())
    assert within_3_std(n_masked, items.numel(), rho)
    assert within_3_std(int(out["behavior_masked"].sum()), n_masked, sigma)
    assert not (out["behavior_masked"] & ~masked).any()            # only at masked items
    assert torch.equal(out["items"], torch.where(masked, 101, items))
    assert torch.equal(out["behaviors"], torch.where(out["behavior_masked"], 5, behaviors))
    assert torch.equal(out["targets"], torch.where(masked, items, 0))
    assert torch.equal(out["target_behaviors"], torch.where(masked, behaviors, 0))


def test_cloze_mask_never_touches_padding_and_masks_at_least_one():
    items, behaviors = full_rows(500, 10)
    items[:, :7], behaviors[:, :7] = 0, 0                            # 3 real tokens per row
    out = cloze_mask(items, behaviors, 0.01, 0.5, 101, 5, torch.Generator().manual_seed(0), 0.0)
    masked = out["targets"] > 0
    assert not masked[:, :7].any() and (out["items"][:, :7] == 0).all()
    assert (masked.sum(dim=1) >= 1).all()
    # the forced mask is uniform over the real tokens
    counts = masked[:, 7:].sum(dim=0).tolist()
    assert all(within_3_std(c, 500, 1 / 3) for c in counts), counts


def test_cloze_mask_last_only():
    items, behaviors = full_rows(4000, 20)
    out = cloze_mask(items, behaviors, 0.3, 0.0, 101, 5, torch.Generator().manual_seed(0),
                     last_only_prob=1.0)
    masked = out["targets"] > 0
    assert masked[:, -1].all() and not masked[:, :-1].any()
    out = cloze_mask(items, behaviors, 0.3, 0.0, 101, 5, torch.Generator().manual_seed(0),
                     last_only_prob=0.5)
    only_last = (out["targets"] > 0).sum(dim=1) == 1
    # rows that mask only the last item: half by choice, plus Cloze rows that happen to
    only_last_by_chance = 0.3 * 0.7 ** 19
    assert within_3_std(int(only_last.sum()), 4000, 0.5 + 0.5 * only_last_by_chance)


def test_cloze_mask_is_reproducible_with_a_generator():
    items, behaviors = full_rows(8, 10)
    a = cloze_mask(items, behaviors, 0.3, 0.3, 101, 5, torch.Generator().manual_seed(7), 0.0)
    b = cloze_mask(items, behaviors, 0.3, 0.3, 101, 5, torch.Generator().manual_seed(7), 0.0)
    assert all(torch.equal(a[k], b[k]) for k in a)
