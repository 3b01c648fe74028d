# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Items, behaviors and their entropy
#
# **What you will learn**
# - how a multi-behavior dataset is laid out: users, items, behaviors, time-ordered sequences;
# - the leave-one-out split every later notebook uses (and why it is by time);
# - how to measure the *asymmetric determinism* between items and behaviors (Table 1);
# - why that asymmetry motivates a *generative* model of items given behaviors.
#
# **Paper:** Section 1 (Table 1), Section 4.1.1 (Table 2), Appendix B.
# **Depends on:** nothing. **Runs in:** a few seconds on CPU (`default` profile, ml100k).
#
# **Notation** (shared by all notebooks; code name ↔ paper symbol):
#
# | code | paper | meaning |
# |---|---|---|
# | `N`, `n_items` | \|V\| | number of items; ids 1..N, 0 = padding, N+1 = [mask] |
# | `n_behaviors` | \|B\| | behavior types; ids 1..\|B\|, 0 = padding, \|B\|+1 = [mask] |
# | `L`, `max_len` | L | maximum sequence length (50) |
# | `D`, `d_model` | d | width of every latent |
# | `rho`, `sigma` | ρ, σ | Cloze item / behavior mask probabilities |
# | `z_b`, `z_null` | z_b, z_∅ | behavior-specific / behavior-agnostic preference |
# | `alpha_bar[t]` | ᾱ_t | cumulative product of 1 − β_s |
# | `omega`, `stride` | ω, Δt | guidance strength, DDIM step interval |
# | `n_shared`, `n_private` | m_s, m_p | shared / private experts of the MCGLN MoE |

# %% tags=["parameters"]
dataset = "ml100k"    # ml100k | yelp | retail | ijcai | synthetic-tiny | ... | yours (data/<name>.dataset.json)
profile = "default"   # smoke | default | full | paper
device = "auto"       # unused here; every notebook takes the same parameters
run_dir = ""          # where results go; empty: runs/<dataset>-<profile> (git-ignored)
data_dir = ""         # empty: <repo>/data
seed = 0

# %%
import json

import numpy as np
import pandas as pd

from fatsmb_lib import plots
from fatsmb_lib.entropy import entropy_table
from fatsmb_lib.preprocess import stats
from fatsmb_lib.run import open_run

run = open_run(dataset, profile, device, run_dir, data_dir, seed)   # loads the data, makes run_dir
run_dir = run.run_dir

# %% [markdown]
# ## 1 · The data
#
# A multi-behavior sequence is a user's time-ordered list of (item, behavior) pairs
# ⟨v_i, b_i⟩ (Section 2.1). On MovieLens-100K, the embedded default, the behavior is derived
# from the rating with a fixed recipe: 1–2 stars → `neg`, 3 → `neutral`, 4–5 → `pos`. Each
# user's interactions are ordered by (timestamp, item id); the tie-break matters because many
# ml100k users rate several films within the same second.
#
# `open_run` derives everything from the parameters; its `load_dataset` reads the raw file,
# builds dense ids and caches the prepared arrays, so the second load takes milliseconds.

# %%
# NBVAL_CHECK_OUTPUT
data = run.data
summary = stats(data)
table2 = pd.DataFrame([{
    "dataset": dataset, "users": summary["users"], "items": summary["items"],
    "interactions": summary["interactions"], "behaviors": ", ".join(data.behavior_names),
    "mean length": round(summary["mean_length"], 1), "density": f"{summary['density']:.4f}",
}])
table2

# %% [markdown]
# The paper's Table 2 for comparison: Yelp 19,800 users / 22,734 items / 1.4M interactions
# (tip, dislike, neutral, like); Retail 147,894 / 99,037 / 7.6M and IJCAI 423,423 / 874,328 /
# 36M (click, favorite, cart, purchase).

# %% [markdown]
# ## 2 · Behaviors are imbalanced, items are long-tailed

# %%
fig = plots.behavior_shares(summary["behaviors"], f"{dataset}: behavior shares")
plots.save(fig, run_dir, "behavior_shares")

# %%
# NBVAL_CHECK_OUTPUT
item_counts = np.bincount(data.seq_items, minlength=data.n_items + 1)[1:]
fig = plots.popularity_long_tail(item_counts, f"{dataset}: item popularity")
plots.save(fig, run_dir, "item_long_tail")
top = np.sort(item_counts)[::-1]
print(f"the 10% most popular items hold {top[: len(top) // 10].sum() / top.sum():.1%} "
      "of all interactions")

# %% [markdown]
# **Takeaway:** one behavior dominates and a few items collect most interactions — any
# recommender must beat plain popularity, which is why `Pop` is in every comparison table.

# %% [markdown]
# ## 3 · The split: leave-one-out by time
#
# Test = each user's **last** interaction (its behavior is the target behavior), validation =
# the **second-last**, training = the rest. Early stopping and every tuning decision use the
# validation item, never the test item.

# %%
# NBVAL_CHECK_OUTPUT
split = data.split()
split_sizes = pd.Series({
    "training interactions": len(split.train_items),
    "validation interactions (one per user)": len(split.valid_items),
    "test interactions (one per user)": len(split.test_items),
})
test_behaviors = pd.Series(np.bincount(split.test_behaviors, minlength=data.n_behaviors + 1)[1:],
                           index=data.behavior_names, name="test targets per behavior")
print(split_sizes.to_string())
print(test_behaviors.to_string())

# %% [markdown]
# ## 4 · Entropy of items and behaviors (Table 1, Appendix B)
#
# With empirical probabilities p(i), p(b) and p(i, b) over all interactions, in nats:
#
# $$H(I) = -\sum_i p(i)\log p(i), \qquad H(B) = -\sum_b p(b)\log p(b)$$
#
# $$H(B\mid I) = -\sum_{i,b} p(i,b)\log\frac{p(i,b)}{p(i)}, \qquad
#   H(I\mid B) = -\sum_{i,b} p(i,b)\log\frac{p(i,b)}{p(b)}$$
#
# $$I(I;B) = H(I) - H(I\mid B) = H(B) - H(B\mid I)$$
#
# `entropy_table` computes each quantity from its own definition (the identities are tested,
# not assumed).

# %%
# NBVAL_CHECK_OUTPUT
ours = entropy_table(data.seq_items, data.seq_behaviors)
paper_table1 = {
    "Yelp": {"H(I)": 9.6591, "H(B)": 1.2540, "H(B|I)": 1.1569, "H(I|B)": 9.5620, "I(I;B)": 0.0971},
    "Retail": {"H(I)": 10.8756, "H(B)": 0.7227, "H(B|I)": 0.6702, "H(I|B)": 10.8231, "I(I;B)": 0.0525},
    "IJCAI": {"H(I)": 12.1743, "H(B)": 0.5691, "H(B|I)": 0.5041, "H(I|B)": 12.1093, "I(I;B)": 0.0651},
}
table1 = pd.DataFrame({f"{dataset} (ours)": ours, **{f"{k} (paper)": v for k, v in paper_table1.items()}}).T
table1.round(4)

# %%
fig = plots.entropy_bars(ours, paper_table1, dataset)
plots.save(fig, run_dir, "entropy_asymmetry")

# %% [markdown]
# **Asymmetric determinism.** Knowing the item leaves little doubt about the behavior:
# H(B|I) is close to H(B) and both are around one nat (a handful of behaviors). Knowing the
# behavior leaves almost all the doubt about the item: H(I|B) is nearly H(I), several nats.
# The mutual information I(I;B) is small in every dataset — behaviors say little about *which*
# item, so predicting a high-entropy item from a low-entropy behavior is a one-to-many problem.
# The paper argues (Section 1) that such a problem suits a generative model that first forms a
# behavior-agnostic preference and then transfers it to the target behavior.

# %%
# NBVAL_CHECK_OUTPUT
ratio = ours["H(I|B)"] / ours["H(B|I)"]
print(f"{dataset}: H(I|B) / H(B|I) = {ratio:.1f}  "
      f"(Yelp {paper_table1['Yelp']['H(I|B)'] / paper_table1['Yelp']['H(B|I)']:.1f}, "
      f"Retail {paper_table1['Retail']['H(I|B)'] / paper_table1['Retail']['H(B|I)']:.1f}, "
      f"IJCAI {paper_table1['IJCAI']['H(I|B)'] / paper_table1['IJCAI']['H(B|I)']:.1f})")

# %% [markdown]
# On ml100k the asymmetry holds as in the paper's three datasets; the absolute values are
# smaller because ml100k has far fewer items (H(I) ≤ log 1682 ≈ 7.4 nats) and three behaviors
# instead of four.

# %%
(run_dir / "stats.json").write_text(json.dumps({"dataset": dataset, **summary}, indent=2) + "\n")
(run_dir / "entropy.json").write_text(json.dumps(ours, indent=2) + "\n")
print("wrote stats.json and entropy.json")

# %% [markdown]
# ## Summary
# - The dataset is a set of time-ordered (item, behavior) sequences, split leave-one-out by time.
# - Behaviors are imbalanced and items long-tailed; popularity is the first baseline to beat.
# - H(B|I) ≪ H(I|B): behaviors are easy to predict from items, items hard to predict from
#   behaviors — the motivation for FatsMB's generative, behavior-conditioned design.
#
# ## Exercises
# 1. Run this notebook with `-p dataset synthetic-yelp-like` and compare its entropies with
#    the paper's Yelp row. Which quantities did the generator match, and which could it not?
# 2. Compute `entropy_table` on the *training* interactions only (`split.train_items`,
#    `split.train_behaviors`). Does the split change the picture?
# 3. Change the ml100k recipe in your head to "rating 5 → pos, else neg". Would H(B|I) go up
#    or down, and why?
