"""Synthetic multi-behavior sequences with planted structure a sequential model can learn.

The paper's datasets (Table 2) cannot be downloaded on the course machines, so the notebooks
also run on data generated here, sized like them. The data have the two kinds of signal the
paper's model is built to separate (Section 1, Figure 1): a behavior-AGNOSTIC preference
(what a user likes, whatever they do with it) and behavior-SPECIFIC transfer (what a user
does next depends on what they did before).

Generative story (all users advance in parallel, one step at a time):

1. Items are split into ``n_topics`` topics of near-equal size. Inside a topic, popularity
   follows a Zipf law with exponent ``zipf`` over a random order of its items, and each item
   has a fixed *successor*: the next item of a random cycle through its topic.
2. User ``u`` likes ``topics_per_user`` topics, drawn in proportion to topic popularity,
   with Dirichlet(``preference_concentration``) weights. This is the behavior-agnostic
   preference.
3. Sequence lengths are log-normal (``length_sigma``) and clipped to
   [``min_len``, ``max_len``], rescaled so the total is ``n_interactions`` exactly.
4. At each step a user either
   a. *revisits* (probability ``p_repeat``, after the first step): picks one of its last
      ``memory`` interactions uniformly and acts on the same item again with the NEXT
      behavior in the dataset's order (pv -> fav -> cart -> buy; the last behavior repeats).
      This is the behavior-specific transfer: an item clicked earlier is later carted, then
      bought, so later behaviors follow from earlier ones; or
   b. *explores*: keeps its current topic with probability ``p_stay_topic`` (else draws a
      topic from its preference); then, if the previous item is in that topic, takes its
      successor with probability ``p_successor`` (a Markov drift: the next item depends on
      the recent ones), otherwise draws an item of the topic by popularity. The behavior is
      drawn from the item's own propensities: ``softmax(log(behavior_probs) + noise)`` with
      per-item Gaussian noise of std ``item_behavior_noise``.
   c. *behavior-led* explore (a share ``behavior_influence`` = lambda of the explore steps):
      the topic step of 4b is kept; then the behavior is drawn FIRST, from the fresh
      marginal ``q`` (below), and the item is drawn as in 4b but among the items that
      behavior owns: each topic's items are dealt at random to the behaviors in equal parts
      (``I_b``, fixed for the dataset), a popularity draw is restricted to the topic's items
      in ``I_b``, and the successor is the next item of ``I_b`` along the topic's cycle
      (``succ_b``). For a user in topic c after item j (state s), with
      f = ``p_successor`` [j in c], Zipf weights w_i and W the weight of the items allowed:

          P_0(i | s) = f [i = succ(j)]   + (1 - f) w_i / W_c       (4b, i in topic c)
          P_b(i | s) = f [i = succ_b(j)] + (1 - f) w_i / W_{c,b}   (i in topic c and I_b)
          P(i, b | s) = (1 - lambda) P_0(i | s) pi_i(b) + lambda q(b) P_b(i | s),

      with pi_i(b) the item's propensities of 4b; without item noise (pi_i = q) the item
      given the behavior is the mixture

          P(i | b, s) = (1 - lambda) P_0(i | s) + lambda P_b(i | s).

      At 0 the behavior does not choose the item (steps 1-4b as they were); at 1 it does
      completely: the item names its behavior (H(B|I) = 0 over fresh interactions), and
      knowing the next behavior confines the next item to 1 / ``n_behaviors`` of its topic.
      Owned items never leave their topic, so the preference of step 2 stays
      behavior-agnostic, and the topic paths, the Markov drift's strength and the fresh
      behavior shares are the same for every lambda: lambda moves only which items of the
      liked topics come with which behavior, the signal a recommender conditioned on the
      target behavior can use. ``item_behavior_noise`` also ties items to behaviors, item
      first: at its default 1.0 the item explains about a fifth of H(B) at lambda = 0. For a
      clean lambda axis set it to 0; with it, the tie can dip at small lambda (mixing two
      kinds of dependence partly cancels them) before rising to H(B|I) = 0 at 1.
5. Timestamps increase by at least 1 per step, so sorting by time recovers the generated
   order exactly.

``behavior_probs`` sets the imbalance of fresh interactions (a dominant behavior, as in the
real data); revisits shift mass towards later behaviors. Behavior-led steps draw their
behavior from ``q_b = sum_i w_i pi_i(b) / sum_i w_i``, the item propensities averaged with
the items' Zipf weights ``w_i`` of step 1 (how often popularity draws them), so that the
fresh shares do not move with lambda (exactly so without item noise).

**Random streams.** The draws of step 4c (who owns which item, which steps are led and
their behaviors) come from a second stream spawned from the seed; its item draws reuse the
uniforms of 4b. The main stream is consumed the same way for every ``behavior_influence``,
so with one seed a grid over lambda shares the lengths, topic paths, revisit choices and
timestamps, and lambda = 0 reproduces the generator without the knob bit for bit.

**A sparse behavior** (``sparse_behavior_share``, default None: off). One behavior, index
``sparse_behavior`` of ``behavior_names`` (default -1, the last one, e.g. buy), gets the
share ``s`` of the fresh interactions: its probability in ``behavior_probs`` is scaled (the
others keep their ratios; softmax renormalises) until the popularity-weighted mean of the
item propensities of step 4b equals ``s``:

    logit'_ib = log p_b + noise_ib + delta [b = sparse],
    q_b = sum_i w_i softmax(logit'_i)_b / sum_i w_i,    delta solves q_sparse = s,

with ``w_i`` as above, so ``q_sparse = s`` holds in step 4c too. Without item noise this is
plain ``p_sparse = s``; with it, the scale is not that of ``s / p_sparse`` (a noisy
propensity's mean is not its median), hence the solve. So a grid can run from
"as common as the others" (``s = 1 / n_behaviors``) to "rare" (``s = 0.01``) with the same
random numbers: only the behavior drawn from a given uniform changes. The fresh share
matches ``s`` up to how far the realised item counts stray from ``w`` (topic preferences,
successor moves). Revisits still add mass to later behaviors, to the last one most, since it
absorbs the revisits of itself and of the one before: on yelp-like (seed 0, ``p_repeat``
0.1) a fresh share of 0.01 for its last behavior is 0.058 of all interactions, 0.05 is
0.096. Where the overall share must be small, lower ``p_repeat``, or make the first
behavior the sparse one (``sparse_behavior=0``): no revisit produces it.

Sampling is vectorised over users (inverse-CDF draws with ``np.searchsorted``); the only
Python loop runs over time steps, up to ``max_len`` of them (and step 4c's tables are built
in a loop over the handful of behaviors).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .readers import Interactions


@dataclass
class SyntheticConfig:
    """Size and structure of a synthetic dataset (see the module docstring for each knob)."""

    n_users: int
    n_items: int
    n_interactions: int
    n_behaviors: int = 4
    behavior_names: tuple[str, ...] = ("pv", "fav", "cart", "buy")
    behavior_probs: tuple[float, ...] = (0.85, 0.04, 0.07, 0.04)
    n_topics: int = 20
    topics_per_user: int = 3
    preference_concentration: float = 1.0
    zipf: float = 0.8
    min_len: int = 5
    max_len: int = 1000
    length_sigma: float = 0.8
    p_repeat: float = 0.2
    memory: int = 8
    p_stay_topic: float = 0.7
    p_successor: float = 0.5
    item_behavior_noise: float = 1.0
    behavior_influence: float = 0.0              # lambda of step 4c; 0: off
    sparse_behavior_share: float | None = None   # None: behavior_probs as given
    sparse_behavior: int = -1                    # index into behavior_names; -1: the last

    def __post_init__(self) -> None:
        assert len(self.behavior_names) == self.n_behaviors == len(self.behavior_probs), (
            "behavior_names and behavior_probs need one entry per behavior")
        assert self.n_topics <= self.n_items, "need at least one item per topic"
        assert 1 <= self.topics_per_user <= self.n_topics, "topics_per_user must be in 1..n_topics"
        assert self.min_len * self.n_users <= self.n_interactions <= self.max_len * self.n_users, (
            "n_interactions must lie between min_len * n_users and max_len * n_users")
        assert 0.0 <= self.behavior_influence <= 1.0, (
            f"behavior_influence={self.behavior_influence} must lie in [0, 1] (the share of "
            f"explore steps whose behavior chooses the item)")
        assert self.behavior_influence == 0 or self.n_items // self.n_topics >= self.n_behaviors, (
            f"behavior_influence={self.behavior_influence} gives each behavior its own items in "
            f"every topic: it needs n_items // n_topics >= n_behaviors, here "
            f"{self.n_items} // {self.n_topics} < {self.n_behaviors}; use fewer topics")
        assert -self.n_behaviors <= self.sparse_behavior < self.n_behaviors, (
            f"sparse_behavior={self.sparse_behavior} must index behavior_names: an integer in "
            f"[{-self.n_behaviors}, {self.n_behaviors - 1}]")
        assert self.sparse_behavior_share is None or 0.0 < self.sparse_behavior_share < 1.0, (
            f"sparse_behavior_share={self.sparse_behavior_share} must lie in the open interval "
            f"(0, 1), or be None to keep behavior_probs")


PRESETS: dict[str, SyntheticConfig] = {
    "tiny": SyntheticConfig(
        n_users=200, n_items=300, n_interactions=5_000, n_topics=10, min_len=10, max_len=40,
        length_sigma=0.5),
    # Table 2's Yelp: 19,800 users / 22,734 items / 1.4M interactions; rating-based behaviors,
    # "pos" dominant. behavior_probs and item_behavior_noise were tuned (seed 0) to Table 1's
    # Yelp row: H(B) 1.251 / H(B|I) 1.158 / I 0.094 nats vs the paper's 1.254 / 1.157 / 0.097.
    "yelp-like": SyntheticConfig(
        n_users=19_800, n_items=22_734, n_interactions=1_400_000,
        behavior_names=("tip", "neg", "neutral", "pos"), behavior_probs=(0.12, 0.17, 0.26, 0.45),
        item_behavior_noise=0.5, n_topics=50, p_repeat=0.1),
    # The map of notebook 05 (where the diffusion pays): ml100k's three behaviors and shares
    # (neg 0.17, neutral 0.27, pos 0.56) on about half its size, so that a grid of variants
    # (behavior_influence x sparse_behavior_share, datasets.synthetic_variant) trains in
    # minutes per cell; no item noise, so behavior_influence alone ties items to behaviors.
    "map": SyntheticConfig(
        n_users=1_000, n_items=1_000, n_interactions=40_000, n_behaviors=3,
        behavior_names=("neg", "neutral", "pos"), behavior_probs=(0.17, 0.27, 0.56),
        n_topics=20, min_len=20, max_len=200, item_behavior_noise=0.0),
    # Table 2's Retail: 147,894 users / 99,037 items / 7.6M interactions; clicks dominate.
    # Tuned like yelp-like (on a 1/10-scale copy) towards Table 1's Retail row
    # (H(B) 0.723 / H(B|I) 0.670 / I 0.053 nats).
    "retail-like": SyntheticConfig(
        n_users=147_894, n_items=99_037, n_interactions=7_600_000,
        behavior_probs=(0.90, 0.02, 0.06, 0.02), item_behavior_noise=0.6, p_repeat=0.08,
        n_topics=100),
}


def _lengths(config: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """Log-normal sequence lengths in [min_len, max_len] summing to n_interactions."""
    n, lo, hi = config.n_users, config.min_len, config.max_len
    weights = rng.lognormal(0.0, config.length_sigma, size=n)
    extra = config.n_interactions - n * lo
    lengths = np.minimum(lo + np.floor(extra * weights / weights.sum()).astype(np.int64), hi)
    missing = config.n_interactions - int(lengths.sum())
    while missing > 0:  # top up users with room, one interaction each per round
        room = np.flatnonzero(lengths < hi)
        pick = rng.choice(room, size=min(missing, len(room)), replace=False)
        lengths[pick] += 1
        missing -= len(pick)
    return lengths


def _categorical(cdf: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row from row-wise cumulative probabilities ``cdf`` (rows, K)."""
    u = rng.random((cdf.shape[0], 1)) * cdf[:, -1:]
    return np.minimum((u >= cdf).sum(axis=1), cdf.shape[1] - 1)


def _share_offset(logits: np.ndarray, weight: np.ndarray, column: int, share: float) -> float:
    """The ``delta`` added to ``logits[:, column]`` (rows, n_behaviors) that makes the
    ``weight``-averaged softmax probability of ``column`` equal ``share`` (module docstring).

    Row i's probability is sigmoid(delta - odds_i), odds_i = log sum_{b != column} e^{l_ib} -
    l_i,column: increasing in delta, so bisection finds it. The bracket is exact: at
    delta = logit(share) + min(odds) no row exceeds ``share``, at + max(odds) none falls short.
    """
    others = np.delete(logits, column, axis=1)
    top = others.max(axis=1)
    odds = top + np.log(np.exp(others - top[:, None]).sum(axis=1)) - logits[:, column]
    target = np.log(share / (1 - share))
    lo, hi = target + odds.min(), target + odds.max()
    for _ in range(60):           # 60 halvings take any bracket below float64 resolution
        mid = (lo + hi) / 2
        mean = (weight * 0.5 * (1 + np.tanh((mid - odds) / 2))).sum() / weight.sum()  # sigmoid
        lo, hi = (mid, hi) if mean < share else (lo, mid)
    return (lo + hi) / 2


def _owned_items(perm: np.ndarray, cycle: np.ndarray, topic_of_slot: np.ndarray,
                 topic_start: np.ndarray, weight: np.ndarray, n_b: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Step 4c's tables: deal each topic's items to the ``n_b`` behaviors in equal parts.

    Returns ``owned_cdf`` (n_b * N,), where (behavior b, topic c) occupies
    (b T + c, b T + c + 1] as topics do in ``global_cdf`` (zero mass off b's items), and
    ``owned_successor`` (n_b, N + 1): for any item, the next item along its topic's cycle
    that b owns. Slots and cycle positions are laid out in the same topic blocks.
    """
    N, T = len(perm), len(topic_start) - 1
    dealt = np.argsort(topic_of_slot + rng.random(N))           # slots, shuffled per topic
    owner = np.empty(N, dtype=np.int64)                          # owner of each slot
    # deal round the table, starting one seat further in each topic, so that where a topic's
    # size is not a multiple of n_b the spare items do not always go to the first behaviors
    owner[dealt] = (np.arange(N) - topic_start[topic_of_slot] + topic_of_slot) % n_b
    owner_of_item = np.zeros(N + 1, dtype=np.int64)
    owner_of_item[perm] = owner
    block_start, block_end = topic_start[topic_of_slot], topic_start[topic_of_slot + 1]
    position = np.arange(N)
    cdfs, owned_successor = [], np.zeros((n_b, N + 1), dtype=np.int64)
    for b in range(n_b):                                         # a handful of behaviors
        cum = np.cumsum(weight * (owner == b))
        before = np.concatenate([[0.0], cum])[topic_start[:-1]]  # mass before each topic
        mass = cum[topic_start[1:] - 1] - before                 # mass of (topic, b)
        # exactly 1 from b's last item of the topic on, so no draw lands past it
        cdfs.append(b * T + topic_of_slot + (cum - before[topic_of_slot]) / mass[topic_of_slot])
        own = np.flatnonzero(owner_of_item[cycle] == b)          # cycle positions b owns
        k = np.searchsorted(own, position, side="right")
        ahead = own[np.minimum(k, len(own) - 1)]                 # next owned position
        wrap = (k == len(own)) | (ahead >= block_end)            # past the topic: go round
        after = np.where(wrap, own[np.searchsorted(own, block_start)], ahead)
        owned_successor[b, cycle] = cycle[after]
    return np.concatenate(cdfs), owned_successor


def generate(config: SyntheticConfig, seed: int = 0) -> Interactions:
    """Generate interactions following the module's generative story (deterministic in seed).

    Users are keyed 1..n_users and items 1..n_items (items that are never drawn simply do
    not appear).
    """
    root = np.random.SeedSequence(seed)
    rng = np.random.default_rng(root)                   # the main stream
    led_rng = np.random.default_rng(root.spawn(1)[0])   # step 4c's own stream
    U, N, T, K = config.n_users, config.n_items, config.n_topics, config.topics_per_user
    n_b = config.n_behaviors

    # 1. topics, within-topic popularity, successors
    perm = rng.permutation(N) + 1                       # items in topic-block order
    topic_start = np.linspace(0, N, T + 1).round().astype(np.int64)
    topic_of_slot = np.repeat(np.arange(T), np.diff(topic_start))
    rank = np.arange(N) - topic_start[topic_of_slot] + 1
    weight = rank.astype(np.float64) ** -config.zipf
    topic_mass = np.bincount(topic_of_slot, weights=weight, minlength=T)
    # global CDF where topic c occupies (c, c + 1]: drawing topic c is searchsorted(c + u)
    cdf_in_topic = np.cumsum(weight) - np.repeat(np.cumsum(topic_mass) - topic_mass,
                                                 np.diff(topic_start))
    global_cdf = topic_of_slot + cdf_in_topic / topic_mass[topic_of_slot]
    topic_of_item = np.full(N + 1, -1, dtype=np.int64)
    topic_of_item[perm] = topic_of_slot
    cycle = perm[np.argsort(topic_of_slot + rng.random(N))]  # random order inside each topic
    nxt = np.arange(1, N + 1)
    nxt[topic_start[1:] - 1] = topic_start[:-1]               # close each topic's cycle
    successor = np.zeros(N + 1, dtype=np.int64)
    successor[cycle] = cycle[nxt]

    # item-level behavior propensities: softmax(log p_b + noise_ib)
    logits = np.log(np.asarray(config.behavior_probs))[None, :] + \
        config.item_behavior_noise * rng.standard_normal((N + 1, n_b))
    item_weight = np.zeros(N + 1)                       # w_i: Zipf weight, 0 for padding
    item_weight[perm] = weight
    if config.sparse_behavior_share is not None:        # scale p_sparse until q_sparse = s
        sparse = config.sparse_behavior % n_b
        logits[:, sparse] += _share_offset(logits, item_weight, sparse,
                                           config.sparse_behavior_share)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    propensity = probs / probs.sum(axis=1, keepdims=True)   # pi_i(b), (N + 1, n_b)
    behavior_cdf = np.cumsum(propensity, axis=1)
    fresh_cdf = np.cumsum(item_weight @ propensity / item_weight.sum())   # of q_b, (n_b,)
    led_on = config.behavior_influence > 0
    if led_on:  # 4c: each behavior's own items, their popularity CDF and successors
        owned_cdf, owned_successor = _owned_items(perm, cycle, topic_of_slot, topic_start,
                                                  weight, n_b, led_rng)

    # 2. behavior-agnostic preferences: K topics per user with Dirichlet weights
    topic_pop = topic_mass / topic_mass.sum()
    # weighted draw without replacement: the K largest keys log(u) / weight (Efraimidis-Spirakis)
    keys = np.log(1 - rng.random((U, T), dtype=np.float32)) / topic_pop.astype(np.float32)
    user_topics = np.argpartition(-keys, K - 1, axis=1)[:, :K]
    user_weights = rng.dirichlet(np.full(K, config.preference_concentration), U)   # (U, K)
    user_topic_cdf = np.cumsum(user_weights, axis=1)

    # 3. lengths and the output layout (user-major, time-ordered)
    lengths = _lengths(config, rng)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    total = int(lengths.sum())
    items = np.zeros(total, dtype=np.int64)
    behaviors = np.zeros(total, dtype=np.int64)
    times = np.zeros(total, dtype=np.int64)

    # 4. advance all users step by step; users sorted by length, so at each step the active
    #    ones are a prefix of `order` and per-user state lives at positions of `order`
    order = np.argsort(-lengths, kind="stable")
    n_active = U - np.searchsorted(np.sort(lengths), np.arange(lengths.max()), side="right")
    topic = user_topics[order, _categorical(user_topic_cdf[order], rng)]
    prev_item = np.zeros(U, dtype=np.int64)
    clock = rng.integers(1_000_000_000, 1_200_000_000, size=U)
    for step in range(int(lengths.max())):
        a = int(n_active[step])
        users = order[:a]
        pos = starts[users] + step
        # 4b. explore: topic drift, successor or popularity draw, item-level behavior
        switch = np.flatnonzero(rng.random(a) >= config.p_stay_topic)
        topic[switch] = user_topics[users[switch], _categorical(user_topic_cdf[users[switch]], rng)]
        u = rng.random(a)
        drawn = perm[np.minimum(np.searchsorted(global_cdf, topic[:a] + u), N - 1)]
        prev = prev_item[:a]
        follow = (prev > 0) & (topic_of_item[prev] == topic[:a]) \
            & (rng.random(a) < config.p_successor)
        item = np.where(follow, successor[prev], drawn)
        behavior = _categorical(behavior_cdf[item], rng) + 1
        if led_on:  # 4c. led steps: the behavior first, then its own item (4b's uniforms)
            led = np.flatnonzero(led_rng.random(a) < config.behavior_influence)
            led_b = _categorical(np.broadcast_to(fresh_cdf, (len(led), n_b)), led_rng)
            flat = np.searchsorted(owned_cdf, led_b * T + topic[led] + u[led])
            own_drawn = perm[np.minimum(flat, n_b * N - 1) % N]
            item[led] = np.where(follow[led], owned_successor[led_b, prev[led]], own_drawn)
            behavior[led] = led_b + 1
        # 4a. revisit one of the last `memory` interactions with the next behavior
        if step > 0:
            revisit = np.flatnonzero(rng.random(a) < config.p_repeat)
            back = rng.integers(1, min(step, config.memory) + 1, size=len(revisit))
            src = pos[revisit] - back
            item[revisit] = items[src]
            behavior[revisit] = np.minimum(behaviors[src] + 1, n_b)
            topic[revisit] = topic_of_item[item[revisit]]
        items[pos], behaviors[pos] = item, behavior
        clock[users] += 1 + rng.geometric(1e-4, size=a)     # 5. strictly increasing time
        times[pos] = clock[users]
        prev_item[:a] = item
    user_keys = np.repeat(np.arange(1, U + 1), lengths)
    return Interactions(
        users=user_keys, items=items, behaviors=behaviors, timestamps=times,
        behavior_names=tuple(config.behavior_names),
        source=f"synthetic {config} seed={seed}")
