"""Preprocessing: ids, time order with its tie-break, leave-one-out split, cache, stats."""
import importlib.util
import warnings

import numpy as np
import pytest

from fatsmb_lib.data import datasets, preprocess, readers, synthetic
from fatsmb_lib.data.preprocess import load_dataset, prepare, stats
from fatsmb_lib.data.readers import DataError, Interactions

needs_recbole = pytest.mark.skipif(importlib.util.find_spec("recbole") is None,
                                   reason="recbole not installed: pip install --no-deps recbole==1.2.1")


def interactions(rows, names=("pv", "fav", "cart", "buy")):
    users, items, behaviors, times = (np.array(c) for c in zip(*rows))
    return Interactions(users=users, items=items, behaviors=behaviors.astype(np.int64),
                        timestamps=times, behavior_names=names, source="test rows")


# user 20: item 10 and item 9 share timestamp 5 -> numeric order puts 9 first ("10" < "9" as text)
ROWS = [(20, 10, 1, 5), (20, 9, 2, 5), (20, 7, 4, 9), (20, 3, 1, 1),
        (11, 7, 1, 3), (11, 3, 3, 2), (11, 9, 2, 8),
        (5, 3, 1, 1), (5, 4, 1, 2)]   # user 5 has 2 interactions: dropped by min_uc=3


def test_prepare_ids_order_and_tie_break():
    d = prepare(interactions(ROWS))
    assert d.user_keys.tolist() == [11, 20]                 # sorted raw keys, user 5 dropped
    assert d.item_keys.tolist() == [3, 7, 9, 10]            # item 4 only belonged to user 5
    assert d.offsets.tolist() == [0, 3, 7]
    raw = d.item_keys[d.seq_items - 1].tolist()
    assert raw == [3, 7, 9,      # user 11 by time 2, 3, 8
                   3, 9, 10, 7]  # user 20: t=1, then the t=5 tie in item order 9 < 10, t=9
    assert d.seq_behaviors.tolist() == [3, 1, 2, 1, 2, 1, 4]
    assert (d.n_users, d.n_items, d.n_behaviors, d.mask_item, d.mask_behavior) == (2, 4, 4, 5, 5)
    assert d.lengths.tolist() == [3, 4]


def test_tie_break_does_not_depend_on_row_order():
    a, b = prepare(interactions(ROWS)), prepare(interactions(ROWS[::-1]))
    assert np.array_equal(a.seq_items, b.seq_items) and a.fingerprint == b.fingerprint


def test_split_leave_one_out():
    d = prepare(interactions(ROWS))
    s = d.split()
    key = d.item_keys
    assert key[s.test_items - 1].tolist() == [9, 7] and s.test_behaviors.tolist() == [2, 4]
    assert key[s.valid_items - 1].tolist() == [7, 10] and s.valid_behaviors.tolist() == [1, 1]
    assert key[s.train_items - 1].tolist() == [3, 3, 9] and s.train_users.tolist() == [0, 1, 1]
    assert s.train_start.tolist() == [0, 3] and s.train_end.tolist() == [1, 5]


@needs_recbole
def test_ml100k_split_matches_an_independent_pandas_sort(tmp_path):
    import pandas as pd
    d = load_dataset("ml100k", cache_dir=tmp_path)
    df = pd.read_csv(readers.ml100k_path(), sep="\t")
    df.columns = ["user", "item", "rating", "t"]
    df = df.sort_values(["user", "t", "item"])
    last = df.groupby("user").tail(1)
    second = df.groupby("user").nth(-2)
    s = d.split()
    assert d.user_keys.tolist() == last["user"].tolist()
    assert d.item_keys[s.test_items - 1].tolist() == last["item"].tolist()
    assert d.item_keys[s.valid_items - 1].tolist() == second["item"].tolist()
    assert stats(d)["interactions"] == 100_000 and d.item_titles[0] == "Toy Story"


def test_empty_after_filter_says_which_filter():
    with pytest.raises(DataError, match=r"min_uc=5 removed every user .*longest of 3 users has 4"):
        prepare(interactions(ROWS), min_uc=5)


def test_stats():
    st = stats(prepare(interactions(ROWS)))
    assert st["users"] == 2 and st["items"] == 4 and st["interactions"] == 7
    assert st["behaviors"] == {"pv": 3, "fav": 2, "cart": 1, "buy": 1}
    assert st["mean_length"] == 3.5 and st["median_length"] == 3.5
    assert st["density"] == 7 / (2 * 4)


# --------------------------------------------------------------------------- cache

LINES = ["1\t5\tpv\t10", "1\t6\tbuy\t11", "1\t7\tcart\t12", "2\t5\tfav\t3", "2\t8\tpv\t4",
         "2\t6\tpv\t5", "2\t9\tbuy\t6"]


@pytest.fixture
def retail_dir(tmp_path):
    (tmp_path / "retail.txt").write_text("\n".join(LINES) + "\n")
    return tmp_path


def same(a, b):
    return (a.fingerprint == b.fingerprint and np.array_equal(a.seq_items, b.seq_items)
            and np.array_equal(a.offsets, b.offsets) and a.behavior_names == b.behavior_names
            and np.array_equal(a.item_keys, b.item_keys))


def count_reads(monkeypatch):
    calls = []
    original = readers.read_mbstr

    def counting(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)
    monkeypatch.setattr(datasets, "read_mbstr", counting)
    return calls


def test_second_load_uses_the_cache(retail_dir, monkeypatch):
    first = load_dataset("retail", data_dir=retail_dir)
    assert len(list((retail_dir / ".cache").glob("retail-*.npz"))) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("the raw file was parsed again")
    monkeypatch.setattr(readers, "read_mbstr", refuse)
    assert same(load_dataset("retail", data_dir=retail_dir), first)


def test_cache_invalidated_when_the_file_or_options_change(retail_dir, monkeypatch):
    calls = count_reads(monkeypatch)
    load_dataset("retail", data_dir=retail_dir)
    load_dataset("retail", data_dir=retail_dir, min_uc=4)      # an option changed
    assert len(calls) == 2
    with open(retail_dir / "retail.txt", "a") as f:
        f.write("3\t5\tpv\t1\n3\t6\tpv\t2\n3\t7\tpv\t3\n")
    d = load_dataset("retail", data_dir=retail_dir)
    assert len(calls) == 3 and d.n_users == 3


def test_file_fingerprint_hashes_head_and_tail(tmp_path, monkeypatch):
    import os
    monkeypatch.setattr(datasets, "HASH_BYTES", 4)
    path = tmp_path / "f.txt"
    path.write_bytes(b"0123456789")
    st = path.stat()
    before = datasets.file_fingerprint(path)
    for edited in (b"X123456789", b"012345678X"):      # same size, mtime put back
        path.write_bytes(edited)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert datasets.file_fingerprint(path) != before
    path.write_bytes(b"0123456789")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert datasets.file_fingerprint(path) == before


def test_interrupted_cache_write_leaves_no_cache(retail_dir, monkeypatch):
    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")          # partial bytes, then the disk "fills up"
        raise OSError("No space left on device")
    monkeypatch.setattr(preprocess.np, "savez", broken_savez)
    with pytest.warns(UserWarning, match="could not write the cache"):
        d = load_dataset("retail", data_dir=retail_dir)
    assert d.n_users == 2
    assert list((retail_dir / ".cache").iterdir()) == []         # no cache, no temp file

    def interrupted(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt
    monkeypatch.setattr(preprocess.np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_dataset("retail", data_dir=retail_dir)
    assert list((retail_dir / ".cache").iterdir()) == []


def test_corrupt_cache_is_ignored_and_rebuilt(retail_dir, monkeypatch):
    good = load_dataset("retail", data_dir=retail_dir)
    (cache,) = (retail_dir / ".cache").glob("retail-*.npz")
    cache.write_bytes(b"not a zip file")
    calls = count_reads(monkeypatch)
    with pytest.warns(UserWarning, match="ignoring unreadable cache"):
        assert same(load_dataset("retail", data_dir=retail_dir), good)
    assert len(calls) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")                # the rebuilt cache reads cleanly
        assert same(load_dataset("retail", data_dir=retail_dir), good)
    assert len(calls) == 1


def test_synthetic_cache_keyed_by_config_and_seed(tmp_path, monkeypatch):
    a = load_dataset("synthetic-tiny", data_dir=tmp_path, synthetic_seed=1)
    monkeypatch.setattr(synthetic, "generate", lambda *a, **k: (_ for _ in ()).throw(
        AssertionError("regenerated")))
    assert same(load_dataset("synthetic-tiny", data_dir=tmp_path, synthetic_seed=1), a)
    with pytest.raises(AssertionError, match="regenerated"):
        load_dataset("synthetic-tiny", data_dir=tmp_path, synthetic_seed=2)


def test_cache_keeps_string_keys_and_titles(tmp_path):
    x = Interactions(users=np.array(["a", "a", "a"]), items=np.array(["p", "q", "r"]),
                     behaviors=np.array([1, 2, 1]), timestamps=np.array([1, 2, 3]),
                     behavior_names=("x", "y"), item_titles={"p": "P!", "q": "Q?", "r": ""})
    d = prepare(x)
    preprocess.save_cache(d, tmp_path / "c.npz")
    back = preprocess.read_cache(tmp_path / "c.npz")
    assert back.item_keys.tolist() == ["p", "q", "r"] and back.user_keys.tolist() == ["a"]
    assert back.item_titles == ["P!", "Q?", ""] and same(back, d)


def test_missing_file_error_before_any_cache_lookup(tmp_path):
    with pytest.raises(DataError, match="yelp.txt not found"):
        load_dataset("yelp", data_dir=tmp_path)


# --------------------------------------------------------------------------- what the rules remove

def test_rows_dropped_by_min_uc_are_reported_with_counts_and_rule():
    with pytest.warns(readers.DataWarning) as record:
        d = prepare(interactions(ROWS))
    (msg,) = [str(w.message) for w in record]
    assert msg == ("test rows: the rule min_uc=3 dropped 1 of 3 users with fewer than 3 "
                   "interactions (2 of 9 interactions; 1 item(s) seen only by them): every user "
                   "needs a training, a validation and a test interaction.")
    assert d.notes == (msg.removeprefix("test rows: "),)


def test_negative_ids_are_kept_and_reported():
    rows = [(-1, 3, 1, 1), (-1, 4, 1, 2), (-1, 5, 2, 3), (7, -2, 1, 1), (7, 3, 1, 2), (7, 4, 4, 3)]
    with pytest.warns(readers.DataWarning) as record:
        d = prepare(interactions(rows))
    messages = [str(w.message) for w in record]
    assert messages == [
        "test rows: 3 interaction(s) have a negative user id (smallest -1); the rule keeps them "
        "as ordinary ids. If a negative id marks a missing value in your export (e.g. -1 = "
        "anonymous), remove those rows first.",
        "test rows: 1 interaction(s) have a negative item id (smallest -2); the rule keeps them "
        "as ordinary ids. If a negative id marks a missing value in your export (e.g. -1 = "
        "anonymous), remove those rows first."]
    assert d.user_keys.tolist() == [-1, 7] and d.item_keys.tolist() == [-2, 3, 4, 5]


def test_clean_data_prepare_silently():
    rows = [r for r in ROWS if r[0] != 5]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert prepare(interactions(rows)).notes == ()


def test_the_report_survives_the_cache(tmp_path):
    (tmp_path / "retail.txt").write_text("\n".join(LINES + ["3\t5\tpv\t1"]) + "\n")
    with pytest.warns(readers.DataWarning, match="min_uc=3 dropped 1 of 3 users"):
        load_dataset("retail", data_dir=tmp_path)
    with pytest.warns(readers.DataWarning, match="min_uc=3 dropped 1 of 3 users"):
        cached = load_dataset("retail", data_dir=tmp_path)    # from the cache: still said
    assert len(cached.notes) == 1


def test_a_cache_edited_by_hand_is_rebuilt(retail_dir, monkeypatch):
    good = load_dataset("retail", data_dir=retail_dir)
    (cache,) = (retail_dir / ".cache").glob("retail-*.npz")
    with np.load(cache) as z:
        arrays = {name: z[name] for name in z.files}
    arrays["seq_items"] = arrays["seq_items"][::-1].copy()   # a plausible edit, meta untouched
    np.savez(cache, **arrays)
    calls = count_reads(monkeypatch)
    with pytest.warns(UserWarning, match=r"ignoring unreadable cache .*do not match the checksum"):
        assert same(load_dataset("retail", data_dir=retail_dir), good)
    assert len(calls) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert same(load_dataset("retail", data_dir=retail_dir), good)


def test_cache_fingerprint_is_recomputed_from_the_arrays(tmp_path):
    d = prepare(interactions([r for r in ROWS if r[0] != 5]))
    d.fingerprint = "0123456789abcdef"                         # a stored fingerprint that lies
    preprocess.save_cache(d, tmp_path / "c.npz")
    with pytest.raises(DataError, match="do not match the data fingerprint"):
        preprocess.read_cache(tmp_path / "c.npz")


# ---------------------------------------------------------------- few-shot (Fig. 7)
def _ml_like():
    from fatsmb_lib.data.datasets import load_interactions, synthetic_variant
    return prepare(load_interactions(synthetic_variant("map", n_users=200,
                                                       n_interactions=8_000)))


@pytest.mark.parametrize("share", [0.3, 1.0])
def test_drop_behavior_removes_that_share_of_training_only(share):
    from fatsmb_lib.data.preprocess import drop_behavior
    data = _ml_like()
    fewer = drop_behavior(data, "neg", share, seed=1)
    before, after = data.split(), fewer.split()
    # validation and test: untouched, user by user
    for name in ("valid_items", "valid_behaviors", "test_items", "test_behaviors"):
        assert np.array_equal(getattr(before, name), getattr(after, name))
    neg = data.behavior_names.index("neg") + 1

    def count(split, b):
        return int((split.train_behaviors == b).sum())

    # a user whose whole training part is neg keeps its most recent interaction
    only_neg = int((np.bincount(before.train_users, weights=before.train_behaviors != neg,
                                minlength=data.n_users) == 0).sum())
    expected = count(before, neg) - round(share * count(before, neg))
    assert expected <= count(after, neg) <= expected + only_neg
    if share == 1.0:
        assert count(after, neg) == only_neg
    for other in set(range(1, data.n_behaviors + 1)) - {neg}:      # other behaviors: all kept
        assert count(after, other) == count(before, other)
    assert (np.diff(after.train_start) >= 0).all() and (after.train_end >= after.train_start).all()
    assert fewer.fingerprint != data.fingerprint and "few-shot" in fewer.notes[-1]


def test_drop_behavior_nests_its_dropped_sets_and_zero_is_the_data_itself():
    from fatsmb_lib.data.preprocess import drop_behavior
    data = _ml_like()
    assert drop_behavior(data, "neg", 0.0) is data

    def kept(share):
        split = drop_behavior(data, "neg", share).split()
        rows = split.train_behaviors == data.behavior_names.index("neg") + 1
        return set(zip(split.train_users[rows].tolist(), split.train_items[rows].tolist()))
    assert kept(0.6) <= kept(0.3) <= kept(0.1)
    with pytest.raises(ValueError, match="'buy' is not one of"):
        drop_behavior(data, "buy", 0.5)
    with pytest.raises(ValueError, match="must lie in"):
        drop_behavior(data, "neg", 1.5)
