"""Synthetic generator: sizes, determinism, and that the planted structure is really there."""
import hashlib
from dataclasses import replace

import numpy as np
import pytest

from fatsmb_lib.data.preprocess import prepare
from fatsmb_lib.data.synthetic import PRESETS, SyntheticConfig, generate
from fatsmb_lib.studies.entropy import entropy_table

TINY = PRESETS["tiny"]
# big enough for counting statistics, small enough to generate in ~0.1 s
MEDIUM = SyntheticConfig(n_users=2_000, n_items=1_000, n_interactions=60_000, n_topics=20,
                         max_len=200)


def user_lengths(x):
    return np.bincount(x.users)[1:]


def test_tiny_sizes_and_ranges():
    x = generate(TINY, seed=0)
    lengths = user_lengths(x)
    assert len(x) == TINY.n_interactions and len(lengths) == TINY.n_users
    assert lengths.min() >= TINY.min_len and lengths.max() <= TINY.max_len
    assert x.items.min() >= 1 and x.items.max() <= TINY.n_items
    assert set(np.unique(x.behaviors)) == {1, 2, 3, 4}
    assert x.behavior_names == ("pv", "fav", "cart", "buy")


def test_deterministic_in_seed():
    a, b, c = generate(TINY, 1), generate(TINY, 1), generate(TINY, 2)
    assert np.array_equal(a.items, b.items) and np.array_equal(a.behaviors, b.behaviors)
    assert np.array_equal(a.timestamps, b.timestamps)
    assert not np.array_equal(a.items, c.items)


def test_time_order_is_the_generated_order():
    x = generate(TINY, 0)
    same_user = x.users[1:] == x.users[:-1]       # rows are user-major, in generated order
    assert (np.diff(x.timestamps)[same_user] > 0).all()


def arrays_digest(x):
    """A short hash of everything ``generate`` samples (users, items, behaviors, times)."""
    h = hashlib.blake2b(digest_size=8)
    for a in (x.users, x.items, x.behaviors, x.timestamps):
        h.update(np.ascontiguousarray(a, dtype="<i8").tobytes())
    return h.hexdigest()


# yelp-like's structure (its behaviors, probabilities, noise, 50 topics) at 1/100 of its size
SMALL_YELP = replace(PRESETS["yelp-like"], n_users=198, n_items=2_273, n_interactions=14_000)


@pytest.mark.parametrize("config, seed, digest", [
    (TINY, 0, "1b9b032eef71eb5c"), (TINY, 1, "961694c214ed47b9"),
    (MEDIUM, 0, "37f06b6dec03d111"),
    (SMALL_YELP, 0, "da4110b7d765bffb"), (SMALL_YELP, 5, "b0cd4a01df0a8397")])
def test_output_is_pinned(config, seed, digest):
    """The arrays ``generate`` returns are exactly those of the generator as of commit 4675c66.

    The digests were computed from that code before any knob was added, so they pin that a
    new knob at its default changes nothing (comparing a knob's default given explicitly with
    it left out could not catch a default that itself changes the draws). They also pin the
    consumption of random numbers: a refactor that draws in another order fails here, and
    must either keep the order or say why the synthetic datasets change (every cached
    preprocessing and every checkpoint trained on them then belongs to other data). Computed
    with numpy 2.4; a numpy whose Generator methods draw differently fails here too.
    """
    assert arrays_digest(generate(config, seed)) == digest


def test_presets_match_table2():
    y, r = PRESETS["yelp-like"], PRESETS["retail-like"]
    assert (y.n_users, y.n_items, y.n_interactions) == (19_800, 22_734, 1_400_000)
    assert y.behavior_names == ("tip", "neg", "neutral", "pos")
    assert (r.n_users, r.n_items, r.n_interactions) == (147_894, 99_037, 7_600_000)
    assert r.behavior_names == ("pv", "fav", "cart", "buy")


def test_dominant_behavior():
    counts = np.bincount(generate(MEDIUM, 0).behaviors)[1:]
    assert counts[0] / counts.sum() > 0.5          # pv dominates, as clicks do in Retail


def hit_rates(config, seed=0, k=10):
    """HR@k on the test item of popularity vs a first-order transition model (both trained on
    the training parts only): the simplest sequential learner."""
    data = prepare(generate(config, seed))
    s = data.split()
    N = data.n_items
    pop = np.bincount(s.train_items, minlength=N + 1)
    pop_top = np.argsort(-pop[1:])[:k] + 1
    pop_hr = np.isin(s.test_items, pop_top).mean()
    same = s.train_users[1:] == s.train_users[:-1]
    trans = np.zeros((N + 1, N + 1))
    np.add.at(trans, (s.train_items[:-1][same], s.train_items[1:][same]), 1)
    scores = trans[s.valid_items] + 1e-6 * pop     # last item before the test one = validation item
    top = np.argsort(-scores[:, 1:], axis=1)[:, :k] + 1
    seq_hr = (top == s.test_items[:, None]).any(axis=1).mean()
    return pop_hr, seq_hr


def test_sequential_signal_beats_popularity():
    pop_hr, seq_hr = hit_rates(MEDIUM)
    assert seq_hr > 2 * pop_hr and seq_hr > 0.2


def test_drift_and_preferences_are_what_the_sequential_model_learns():
    _, seq_hr = hit_rates(MEDIUM)
    no_drift = replace(MEDIUM, p_successor=0.0, p_repeat=0.0, p_stay_topic=0.0)
    _, no_drift_hr = hit_rates(no_drift)
    assert seq_hr > 2 * no_drift_hr                # the Markov drift carries most of the signal
    # with neither drift nor personal topics, nothing beats popularity
    flat = replace(no_drift, topics_per_user=MEDIUM.n_topics, preference_concentration=1e4)
    pop_hr, flat_hr = hit_rates(flat)
    assert flat_hr < 1.2 * pop_hr


def funnel_share(config):
    """Among immediate repeats of an item, the share whose behavior is the next one along
    pv -> fav -> cart -> buy (buy stays buy)."""
    x = generate(config, 0)
    repeat = (x.users[1:] == x.users[:-1]) & (x.items[1:] == x.items[:-1])
    return (x.behaviors[1:][repeat] == np.minimum(x.behaviors[:-1][repeat] + 1, 4)).mean()


def test_behavior_transfer_revisits_move_along_the_funnel():
    # revisits pick one of the last 8 steps, so 1 in 8 is an immediate repeat; the other
    # immediate repeats are chance redraws of a popular item with a fresh behavior
    assert funnel_share(MEDIUM) > 0.6
    assert funnel_share(replace(MEDIUM, p_repeat=0.0)) < 0.2


@pytest.mark.parametrize("noise, expect_information", [(1.0, True), (0.0, False)])
def test_behavior_depends_on_the_item(noise, expect_information):
    x = generate(replace(MEDIUM, item_behavior_noise=noise, p_repeat=0.0), 0)
    table = entropy_table(x.items, x.behaviors)
    # I(I;B) of independent draws is only the small plug-in bias, about (|I|-1)(|B|-1)/(2n)
    bias = (len(np.unique(x.items)) - 1) * 3 / (2 * len(x))
    assert (table["I(I;B)"] > 5 * bias) == expect_information


@pytest.mark.parametrize("noise", [0.0, 1.0])
@pytest.mark.parametrize("share", [0.25, 0.04, 0.01])
def test_sparse_behavior_gets_its_share_of_fresh_interactions(share, noise):
    """Without revisits every interaction is fresh. Tolerance: 3 binomial standard deviations
    plus 10% of the share, for the realised item counts straying from the Zipf weights the
    share is solved on (the propensities' mean is taken over items weighted by w_i, the
    counts come from topic preferences and successor moves; seeds 0-1 stray by up to 6%)."""
    config = replace(MEDIUM, p_repeat=0.0, item_behavior_noise=noise,
                     sparse_behavior_share=share)
    x = generate(config, 0)
    measured = (x.behaviors == MEDIUM.n_behaviors).mean()     # sparse_behavior=-1: the last
    assert abs(measured - share) < 0.1 * share + 3 * np.sqrt(share * (1 - share) / len(x))


def test_sparse_behavior_can_be_any_behavior():
    x = generate(replace(MEDIUM, p_repeat=0.0, sparse_behavior=0, sparse_behavior_share=0.2), 0)
    assert abs((x.behaviors == 1).mean() - 0.2) < 0.03           # pv, dominant by default


def test_sparse_share_keeps_the_random_numbers():
    """Only which behavior a uniform picks changes (no draw is added or skipped): items,
    users and times are those of the default, so a grid over shares compares like with like."""
    a, b = generate(TINY, 0), generate(replace(TINY, sparse_behavior_share=0.01), 0)
    assert np.array_equal(a.items, b.items) and np.array_equal(a.timestamps, b.timestamps)
    assert np.array_equal(a.users, b.users) and not np.array_equal(a.behaviors, b.behaviors)


@pytest.mark.parametrize("field, value", [
    ("sparse_behavior_share", 0.0), ("sparse_behavior_share", 1.0),
    ("sparse_behavior_share", -0.1), ("sparse_behavior", 4), ("sparse_behavior", -5),
    ("behavior_influence", -0.1), ("behavior_influence", 1.5)])
def test_out_of_range_knobs_name_the_field(field, value):
    with pytest.raises(AssertionError, match=f"{field}={value}"):
        replace(TINY, **{field: value})


def test_influence_needs_an_item_per_behavior_in_each_topic():
    with pytest.raises(AssertionError, match="n_items // n_topics >= n_behaviors"):
        replace(TINY, n_topics=100, behavior_influence=0.5)      # 3 items a topic, 4 behaviors
    replace(TINY, n_topics=100)                                  # fine without the knob


def behavior_share_of_item_information(x, shuffles=20, seed=0):
    """I(I;B) / H(B) = 1 - H(B|I) / H(B): the share of the behavior's uncertainty the item
    removes (0: independent, 1: the item names its behavior), and the same statistic for
    behaviors shuffled across rows (the null of independence with these marginals: the
    plug-in I(I;B) is biased upwards by about (|I| - 1)(|B| - 1) / (2n)), one per shuffle."""
    rng = np.random.default_rng(seed)
    table = entropy_table(x.items, x.behaviors)
    null = [entropy_table(x.items, rng.permutation(x.behaviors))["I(I;B)"] / table["H(B)"]
            for _ in range(shuffles)]
    return table["I(I;B)"] / table["H(B)"], np.array(null)


def fresh(config, **changes):
    """``config`` with every interaction fresh (no revisits) and ``changes`` applied."""
    return replace(config, p_repeat=0.0, **changes)


def test_without_influence_the_item_does_not_depend_on_the_behavior():
    """lambda = 0 and no item noise: the behavior is drawn apart from the item. The measured
    share must lie within the permutation null (its mean + 4 sd; the null's sd is ~0.001
    here, so 0.005 above it fails: lambda = 0.1 gives 0.009, lambda = 0.25 gives 0.05)."""
    measured, null = behavior_share_of_item_information(
        generate(fresh(MEDIUM, item_behavior_noise=0.0, behavior_influence=0.0), 0))
    assert measured < null.mean() + 4 * null.std()


@pytest.mark.parametrize("noise", [0.0, 1.0])
def test_influence_makes_the_behavior_decide_the_item(noise):
    """The share of H(B) the item explains, less its permutation null, rises over lambda =
    0, 0.5, 1 (by at least 0.05 a step), and at 1 every item has one behavior (H(B|I) = 0).
    With item noise the statistic starts above 0 (the item's own propensities) and can dip
    at small lambda: mixing two kinds of dependence partly cancels them."""
    excess = []
    for influence in (0.0, 0.5, 1.0):
        x = generate(fresh(MEDIUM, item_behavior_noise=noise, behavior_influence=influence), 0)
        measured, null = behavior_share_of_item_information(x, shuffles=5)
        excess.append(measured - null.mean())
    assert excess[0] + 0.05 < excess[1] and excess[1] + 0.05 < excess[2]
    assert entropy_table(x.items, x.behaviors)["H(B|I)"] < 1e-9


def test_led_steps_keep_the_markov_drift_per_behavior():
    """At lambda = 1 with pure drift (stay in the topic, always follow), the next item is a
    function of the previous item and the next behavior (each behavior's successor cycle),
    and each behavior owns about a quarter of the items."""
    x = generate(fresh(MEDIUM, behavior_influence=1.0, p_successor=1.0, p_stay_topic=1.0), 0)
    same = x.users[1:] == x.users[:-1]
    prev, b, nxt = x.items[:-1][same], x.behaviors[1:][same], x.items[1:][same]
    contexts = np.unique(prev * 10 + b)
    assert len(np.unique((prev * 10 + b) * 10_000 + nxt)) == len(contexts)
    owned = np.array([len(np.unique(x.items[x.behaviors == k])) for k in (1, 2, 3, 4)])
    assert owned.max() <= MEDIUM.n_items / 4 and owned.min() > 0.1 * MEDIUM.n_items


def test_influence_keeps_the_random_numbers_and_the_shares():
    """The knob's draws come from their own stream: users and times are those of lambda = 0,
    and so are the fresh behavior shares (3 binomial sd + 10% as in the sparse test)."""
    base = generate(fresh(MEDIUM), 0)
    led = generate(fresh(MEDIUM, behavior_influence=1.0, sparse_behavior_share=0.05), 0)
    assert np.array_equal(base.users, led.users)
    assert np.array_equal(base.timestamps, led.timestamps)
    share = (led.behaviors == 4).mean()
    assert abs(share - 0.05) < 0.1 * 0.05 + 3 * np.sqrt(0.05 * 0.95 / len(led))


def test_sampling_calls_grow_with_the_steps_not_the_users(monkeypatch):
    """Vectorised over users: doubling the users (same sequence lengths) makes no more
    calls to the categorical sampler; a loop over users would."""
    from fatsmb_lib.data import synthetic
    calls = []

    def counted(cdf, rng):
        calls.append(len(cdf))
        return categorical(cdf, rng)

    categorical = synthetic._categorical
    monkeypatch.setattr(synthetic, "_categorical", counted)
    counts = []
    for n_users in (100, 200):
        config = SyntheticConfig(n_users=n_users, n_items=400, n_interactions=20 * n_users,
                                 n_topics=10, min_len=20, max_len=20, behavior_influence=0.5)
        calls.clear()
        generate(config, 0)
        counts.append(len(calls))
    assert counts[0] == counts[1] <= 3 * 20 + 1
