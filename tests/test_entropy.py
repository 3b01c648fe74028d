"""Entropy table of Appendix B: a hand-computed example, the identities, and limit cases."""
import math

import numpy as np
import pytest

from fatsmb_lib.studies.entropy import entropy_table

KEYS = {"H(I)", "H(B)", "H(B|I)", "H(I|B)", "I(I;B)"}


def test_hand_computed_example():
    # pairs (a, x), (a, y), (b, x), (b, x); n = 4
    t = entropy_table(np.array(["a", "a", "b", "b"]), np.array(["x", "y", "x", "x"]))
    assert set(t) == KEYS
    ln2, ln3 = math.log(2), math.log(3)
    # p(a) = p(b) = 1/2                          -> H(I) = ln 2
    assert t["H(I)"] == pytest.approx(ln2)
    # p(x) = 3/4, p(y) = 1/4: -(3/4 ln 3/4 + 1/4 ln 1/4) = 2 ln 2 - 3/4 ln 3
    assert t["H(B)"] == pytest.approx(2 * ln2 - 0.75 * ln3)
    # given a: x, y equally likely (ln 2, weight 1/2); given b: always x (0) -> 1/2 ln 2
    assert t["H(B|I)"] == pytest.approx(0.5 * ln2)
    # given x (weight 3/4): a 1/3, b 2/3 -> ln 3 - 2/3 ln 2; given y: always a (0)
    #   -> 3/4 (ln 3 - 2/3 ln 2) = 3/4 ln 3 - 1/2 ln 2
    assert t["H(I|B)"] == pytest.approx(0.75 * ln3 - 0.5 * ln2)
    # I = H(B) - H(B|I) = 2 ln 2 - 3/4 ln 3 - 1/2 ln 2 = 3/2 ln 2 - 3/4 ln 3 ~ 0.2158
    assert t["I(I;B)"] == pytest.approx(1.5 * ln2 - 0.75 * ln3)


def joint_entropy(items, behaviors):
    _, counts = np.unique(np.stack([items, behaviors]), axis=1, return_counts=True)
    p = counts / counts.sum()
    return -(p * np.log(p)).sum()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_identities_on_random_data(seed):
    rng = np.random.default_rng(seed)
    items = rng.zipf(1.5, size=5_000) % 300
    behaviors = (items % 3 + rng.integers(0, 2, size=5_000)) % 4    # behavior leans on the item
    t = entropy_table(items, behaviors)
    h_ib = joint_entropy(items, behaviors)
    assert t["H(I|B)"] == pytest.approx(h_ib - t["H(B)"])
    assert t["H(B|I)"] == pytest.approx(h_ib - t["H(I)"])
    assert t["I(I;B)"] == pytest.approx(t["H(I)"] - t["H(I|B)"])
    assert t["I(I;B)"] == pytest.approx(t["H(B)"] - t["H(B|I)"])
    assert t["I(I;B)"] > 0.1 and t["H(B|I)"] < t["H(B)"]


def test_independent_pairs_share_no_information():
    # every item with every behavior equally often: p(i, b) = p(i) p(b)
    items, behaviors = np.repeat(np.arange(7), 4), np.tile(np.arange(4), 7)
    t = entropy_table(items, behaviors)
    assert t["I(I;B)"] == pytest.approx(0, abs=1e-12)
    assert t["H(B|I)"] == pytest.approx(t["H(B)"]) == pytest.approx(math.log(4))
    assert t["H(I|B)"] == pytest.approx(t["H(I)"]) == pytest.approx(math.log(7))


def test_behavior_determined_by_item():
    items = np.array([1, 1, 2, 3, 3, 3])
    t = entropy_table(items, items % 2)       # behavior is a function of the item
    assert t["H(B|I)"] == pytest.approx(0, abs=1e-12)
    assert t["I(I;B)"] == pytest.approx(t["H(B)"])


def test_labels_do_not_matter():
    rng = np.random.default_rng(0)
    items, behaviors = rng.integers(0, 50, 1000), rng.integers(1, 5, 1000)
    a = entropy_table(items, behaviors)
    b = entropy_table(items * 7 + 1000, (5 - behaviors).astype(str))
    assert all(a[k] == pytest.approx(b[k]) for k in KEYS)
