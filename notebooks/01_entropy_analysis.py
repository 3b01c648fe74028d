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
# Notation and background: [00 · Notation and primer](00_notation.ipynb)
#
# **What you will learn**
# - how a multi-behavior dataset is laid out: users, items, behaviors, time-ordered sequences;
# - the leave-one-out split every later notebook uses (and why it is by time);
# - what Table 1 measures: the entropies of items and behaviors, their conditional entropies
#   and the mutual information, and the identities that tie them together;
# - where the *asymmetric determinism* of Section 1 comes from, and why it motivates a
#   *generative* model of items given behaviors.
#
# **Paper:** Section 1 (Table 1), Section 4.1.1 (Table 2), Appendix B.
# **Depends on:** nothing. **Runs in:** a few seconds on CPU (`default` profile, ml100k).

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
from IPython.display import Markdown

from fatsmb_lib.data.preprocess import stats
from fatsmb_lib.studies import plots
from fatsmb_lib.studies.entropy import entropy_table
from fatsmb_lib.training.run import expect, open_run

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
# Below, our dataset beside the paper's Table 2 (its interaction counts as the paper rounds
# them).

# %%
# NBVAL_CHECK_OUTPUT
data = run.data
summary = stats(data)
paper_table2 = {   # Table 2 of the paper; interactions rounded as printed there
    "Yelp": {"users": 19_800, "items": 22_734, "interactions": 1.4e6,
             "behaviors": "tip, dislike, neutral, like"},
    "Retail": {"users": 147_894, "items": 99_037, "interactions": 7.6e6,
               "behaviors": "click, favorite, cart, purchase"},
    "IJCAI": {"users": 423_423, "items": 874_328, "interactions": 3.6e7,
              "behaviors": "click, favorite, cart, purchase"},
}
table2 = pd.DataFrame({
    f"{dataset} (ours)": {"users": summary["users"], "items": summary["items"],
                          "interactions": summary["interactions"],
                          "behaviors": ", ".join(data.behavior_names),
                          "mean length": round(summary["mean_length"], 1)},
    **{f"{name} (paper)": {**row, "mean length": round(row["interactions"] / row["users"], 1)}
       for name, row in paper_table2.items()},
}).T
density = table2["interactions"] / (table2["users"] * table2["items"])
table2["density"] = density.map("{:.3%}".format)
for column in ("users", "items", "interactions"):
    table2[column] = table2[column].map("{:,.0f}".format)
table2

# %%
paper_density = density[[f"{name} (paper)" for name in paper_table2]]
Markdown(f"**Takeaway:** {dataset} has {summary['users']:,} users and {summary['items']:,} items; "
         f"a user has {summary['mean_length']:.0f} interactions on average and "
         f"{summary['density']:.2%} of the user × item matrix is observed "
         f"({paper_density.min():.3%} to {paper_density.max():.2%} in the paper's datasets). "
         "Absolute numbers will therefore differ from the paper's; trends are what can be compared.")

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
top_share = top[: len(top) // 10].sum() / top.sum()
print(f"the 10% most popular items hold {top_share:.1%} of all interactions")

# %%
behavior_share = pd.Series(summary["behaviors"]) / summary["interactions"]
Markdown(f"**Takeaway:** the most frequent behavior, `{behavior_share.idxmax()}`, is "
         f"{behavior_share.max():.1%} of all interactions and the rarest, "
         f"`{behavior_share.idxmin()}`, {behavior_share.min():.1%}; the 10% most popular items "
         f"hold {top_share:.1%} of the interactions. Popularity alone is therefore a baseline "
         "worth beating, which is why `Pop` is in every comparison table.")

# %% [markdown]
# ## 3 · The split: leave-one-out by time
#
# Test = each user's **last** interaction (its behavior is the target behavior), validation =
# the **second-last**, training = the rest. Early stopping and every tuning decision use the
# validation item, never the test item. The paper (Section 4.1.1) holds out the last
# interaction for test and trains on the rest; it does not say where its validation data come
# from, so the second-last item is our choice.

# %%
# NBVAL_CHECK_OUTPUT
split = data.split()
last = data.offsets[1:] - 1                       # index of each user's last interaction
# the split is a partition: one validation and one test item per user, everything else trains
assert len(split.train_items) + len(split.valid_items) + len(split.test_items) == summary["interactions"]
assert len(split.valid_items) == len(split.test_items) == data.n_users
assert (split.test_items == data.seq_items[last]).all() and (split.valid_items == data.seq_items[last - 1]).all()
assert (split.train_end == last - 1).all() and (split.train_start == data.offsets[:-1]).all()
split_sizes = pd.Series({
    "training interactions": len(split.train_items),
    "validation interactions (one per user)": len(split.valid_items),
    "test interactions (one per user)": len(split.test_items),
})
test_behaviors = pd.Series(np.bincount(split.test_behaviors, minlength=data.n_behaviors + 1)[1:],
                           index=data.behavior_names, name="test targets per behavior")
print(split_sizes.to_string())
print(test_behaviors.to_string())

# %%
test_share = test_behaviors / test_behaviors.sum()
Markdown("**Takeaway:** the split is a partition (checked above). The test targets' behaviors, "
         "beside the data's: "
         + ", ".join(f"`{b}` {test_share[b]:.1%} of the test targets ({behavior_share[b]:.1%} of "
                     "all interactions)" for b in data.behavior_names)
         + ". A model that serves only the most frequent behavior is scored on this mix, which "
         "is why notebooks 02–04 also report NDCG@10 per target behavior.")

# %% [markdown]
# ## 4 · Entropy of items and behaviors (Table 1, Appendix B)
#
# Appendix B defines these in words (its formulas are not displayed, so they carry no
# number): with empirical probabilities p(i), p(b) and p(i, b) over all interactions, in nats,
#
# $$H(I) = -\sum_i p(i)\log p(i), \qquad H(B) = -\sum_b p(b)\log p(b)$$
#
# $$H(B\mid I) = -\sum_{i,b} p(i,b)\log\frac{p(i,b)}{p(i)}, \qquad
#   H(I\mid B) = -\sum_{i,b} p(i,b)\log\frac{p(i,b)}{p(b)}$$
#
# $$I(I;B) = \sum_{i,b} p(i,b)\log\frac{p(i,b)}{p(i)\,p(b)} = H(I) - H(I\mid B) = H(B) - H(B\mid I)$$
#
# The last line is the symmetry of mutual information: what the item tells about the behavior
# is exactly what the behavior tells about the item. `entropy_table` computes each quantity
# from its own definition, so the identities can be checked rather than assumed.

# %%
# NBVAL_CHECK_OUTPUT
ours = entropy_table(data.seq_items, data.seq_behaviors)
paper_table1 = {
    "Yelp": {"H(I)": 9.6591, "H(B)": 1.2540, "H(B|I)": 1.1569, "H(I|B)": 9.5620, "I(I;B)": 0.0971},
    "Retail": {"H(I)": 10.8756, "H(B)": 0.7227, "H(B|I)": 0.6702, "H(I|B)": 10.8231, "I(I;B)": 0.0525},
    "IJCAI": {"H(I)": 12.1743, "H(B)": 0.5691, "H(B|I)": 0.5041, "H(I|B)": 12.1093, "I(I;B)": 0.0651},
}
tables = {f"{dataset} (ours)": ours, **{f"{k} (paper)": v for k, v in paper_table1.items()}}
table1 = pd.DataFrame(tables).T
table1.round(4)

# %% [markdown]
# The identities, checked: on our numbers up to float rounding, on the paper's Table 1 up to
# its four printed decimals (a rounding error of 5·10⁻⁵ per entry).

# %%
# NBVAL_CHECK_OUTPUT
for name, t in tables.items():
    tol = 1e-9 if name.endswith("(ours)") else 2e-4
    gain_b, gain_i = t["H(B)"] - t["H(B|I)"], t["H(I)"] - t["H(I|B)"]
    assert abs(gain_b - gain_i) <= tol, f"{name}: mutual information is not symmetric"
    assert abs(t["I(I;B)"] - gain_b) <= tol, f"{name}: I(I;B) != H(B) - H(B|I)"
    assert min(gain_b, gain_i, t["I(I;B)"]) >= -tol, f"{name}: conditioning increased an entropy"
    # hence the gap between the two conditional entropies is the gap between the marginals
    assert abs((t["H(I|B)"] - t["H(B|I)"]) - (t["H(I)"] - t["H(B)"])) <= 2 * tol, name
# an entropy is at most the log of the number of values (reached by a uniform distribution)
assert ours["H(B)"] <= np.log(data.n_behaviors) and ours["H(I)"] <= np.log(data.n_items)
print(f"identities hold for {', '.join(tables)}; "
      f"H(B) <= log {data.n_behaviors} = {np.log(data.n_behaviors):.3f}, "
      f"H(I) <= log {data.n_items} = {np.log(data.n_items):.3f}")

# %%
fig = plots.entropy_bars(ours, paper_table1, dataset)
plots.save(fig, run_dir, "entropy_asymmetry")

# %% [markdown]
# Where does the asymmetry come from? The table below puts each dataset's numbers in the
# three forms that answer it: the absolute reductions (equal, by the identity), the
# *relative* reductions, and the effective number of values left in doubt, e^H.

# %%
# NBVAL_CHECK_OUTPUT
asymmetry = pd.DataFrame({name: {
    "I(I;B) = H(B) − H(B|I) = H(I) − H(I|B)": t["I(I;B)"],
    "H(I|B) − H(B|I)": t["H(I|B)"] - t["H(B|I)"],
    "H(I) − H(B)": t["H(I)"] - t["H(B)"],
    "share of H(B) removed by knowing the item": 1 - t["H(B|I)"] / t["H(B)"],
    "share of H(I) removed by knowing the behavior": 1 - t["H(I|B)"] / t["H(I)"],
    "e^H(B|I): behaviors in doubt given the item": np.exp(t["H(B|I)"]),
    "e^H(I|B): items in doubt given the behavior": np.exp(t["H(I|B)"]),
} for name, t in tables.items()})
asymmetry.round(3)

# %%
expect(ours["H(I|B)"] > ours["H(B|I)"],
       "items to be less predictable from behaviors than behaviors from items (H(I|B) > H(B|I))",
       "H(I|B) − H(B|I) = H(I) − H(B), so it fails only where behaviors carry more entropy "
       "than items (very few items)", dataset=dataset)
me = asymmetry[f"{dataset} (ours)"]
paper_b = asymmetry.loc["share of H(B) removed by knowing the item", [f"{k} (paper)" for k in paper_table1]]
Markdown(
    f"**Asymmetric determinism, read from the numbers.** On {dataset}, knowing the item removes "
    f"{me['share of H(B) removed by knowing the item']:.1%} of the behavior's uncertainty "
    f"(H(B) {ours['H(B)']:.3f} → H(B|I) {ours['H(B|I)']:.3f} nats; the paper's datasets: "
    f"{paper_b.min():.1%} to {paper_b.max():.1%}), and knowing the behavior removes "
    f"{me['share of H(I) removed by knowing the behavior']:.1%} of the item's "
    f"(H(I) {ours['H(I)']:.3f} → H(I|B) {ours['H(I|B)']:.3f}). In nats both remove the same "
    f"I(I;B) = {ours['I(I;B)']:.3f}: mutual information is symmetric. So the gap "
    f"H(I|B) − H(B|I) = {me['H(I|B) − H(B|I)']:.3f} nats is exactly H(I) − H(B): it comes from "
    f"there being many more items than behaviors, not from one variable telling more about the "
    f"other. In effective numbers: given the item, about "
    f"{me['e^H(B|I): behaviors in doubt given the item']:.1f} of the {data.n_behaviors} behaviors "
    f"remain in doubt; given the behavior, about "
    f"{me['e^H(I|B): items in doubt given the behavior']:.0f} of the {data.n_items:,} items do.\n\n"
    "Section 1 reads Table 1 as \"user behavior toward a given item is relatively predictable\". "
    f"That holds relative to the items only: the item leaves "
    f"{1 - me['share of H(B) removed by knowing the item']:.0%} of the behavior's entropy here and "
    f"{1 - paper_b.max():.0%} to {1 - paper_b.min():.0%} in the paper's datasets. What the table "
    "does support is the paper's design argument: "
    "predicting a high-entropy item from a low-entropy behavior is a one-to-many problem, which "
    "suits a generative model that first forms a behavior-agnostic preference and then transfers "
    "it to the target behavior (Section 1).")

# %%
paper_h_i = [v["H(I)"] for v in paper_table1.values()]
Markdown(f"**Takeaway:** H(I|B) / H(B|I) = {ours['H(I|B)'] / ours['H(B|I)']:.1f} on {dataset} "
         f"(paper: " + ", ".join(f"{k} {v['H(I|B)'] / v['H(B|I)']:.1f}" for k, v in paper_table1.items())
         + f"); the ratio follows H(I) − H(B). H(I) is {ours['H(I)']:.2f} nats here and "
         f"{min(paper_h_i):.2f} to {max(paper_h_i):.2f} in the paper: {dataset} has "
         f"{data.n_items:,} items (H(I) ≤ log {data.n_items:,} = {np.log(data.n_items):.2f} nats) "
         f"and {data.n_behaviors} behaviors, against the paper's "
         f"{min(r['items'] for r in paper_table2.values()):,} to "
         f"{max(r['items'] for r in paper_table2.values()):,} items and "
         f"{len(paper_table2['Yelp']['behaviors'].split(', '))} behaviors.")

# %% [markdown]
# ## Summary

# %%
(run_dir / "stats.json").write_text(json.dumps({"dataset": dataset, **summary}, indent=2) + "\n")
(run_dir / "entropy.json").write_text(json.dumps(ours, indent=2) + "\n")
print("wrote stats.json and entropy.json")

# %%
Markdown(
    f"- {dataset} is a set of time-ordered (item, behavior) sequences ({summary['users']:,} users, "
    f"{summary['interactions']:,} interactions), split leave-one-out by time: one validation and "
    "one test item per user.\n"
    f"- Behaviors are imbalanced (`{behavior_share.idxmax()}`: {behavior_share.max():.1%}) and "
    f"items long-tailed (top 10%: {top_share:.1%} of interactions); popularity is the first "
    "baseline to beat.\n"
    f"- H(I|B) = {ours['H(I|B)']:.2f} nats against H(B|I) = {ours['H(B|I)']:.2f}, but both conditionals "
    f"sit below their marginals by the same I(I;B) = {ours['I(I;B)']:.3f}: the asymmetry is "
    f"H(I) − H(B). Items stay hard to predict from behaviors, the motivation for FatsMB's "
    "generative, behavior-conditioned design.")

# %% [markdown]
# ## Exercises
#
# Work in JupyterLab, below the notebook's own cells (they define `data`, `split`, `ours`).
#
# 1. **Training interactions only.** Table 1 is computed over *all* interactions, test items
#    included. Compute `entropy_table` on the training part only (`split.train_items`,
#    `split.train_behaviors`). Which quantities move, by how much, and does the picture change?
# 2. **Fewer behaviors.** Relabel every behavior except the most frequent one as a single
#    `other` behavior. Before computing: will H(B), H(B|I) and I(I;B) go up or down? Then
#    check with `entropy_table`, and say which inequality guarantees each direction.
# 3. **How much mutual information is there by chance?** Shuffle the behavior column
#    (`np.random.default_rng(seed).permutation`), keeping the items in place, and recompute
#    the table. Which entries cannot change, and why is I(I;B) of the shuffled data not 0?
#    Compare it with the Miller–Madow estimate of the bias, (|I| − 1)(|B| − 1) / (2n).

# %% [markdown] tags=["solution"]
# **Solution 1.** The training part drops two interactions per user, a small share of the
# data. The printout gives the largest change of any entry; the identities hold there too.
# Whether the held-out items are counted moves the numbers far less than the gap between
# H(I|B) and H(B|I), so Table 1's picture does not depend on it.

# %% tags=["solution"]
train_table = entropy_table(split.train_items, split.train_behaviors)
change = pd.DataFrame({"all interactions": ours, "training only": train_table}).T
change.loc["difference"] = change.loc["training only"] - change.loc["all interactions"]
assert abs((train_table["H(B)"] - train_table["H(B|I)"]) - (train_table["H(I)"] - train_table["H(I|B)"])) < 1e-9
largest = change.loc["difference"].abs().max()
expect(largest < 0.1 * (ours["H(I|B)"] - ours["H(B|I)"]),
       "the held-out items to move Table 1 far less than its asymmetry",
       "with very short sequences the two held-out items per user are a large share", dataset=dataset)
print(f"largest change: {largest:.4f} nats ({change.loc['difference'].abs().idxmax()}), against "
      f"H(I|B) − H(B|I) = {ours['H(I|B)'] - ours['H(B|I)']:.3f}")
change.round(4)

# %% [markdown] tags=["solution"]
# **Solution 2.** The merged behavior B' is a function of B, so H(B') ≤ H(B) (a function
# cannot add uncertainty), H(B'|I) ≤ H(B|I) (the same, for each item), and
# I(I;B') ≤ I(I;B) (the data processing inequality: processing B cannot tell more about the
# item). The inequalities hold for the empirical distributions as well, so they are asserted.

# %% tags=["solution"]
top_behavior = int(np.argmax(np.bincount(data.seq_behaviors)))  # the most frequent behavior id
merged = np.where(data.seq_behaviors == top_behavior, 1, 2)     # 1: that behavior, 2: other
merged_table = entropy_table(data.seq_items, merged)
for key in ("H(B)", "H(B|I)", "I(I;B)"):
    assert merged_table[key] <= ours[key] + 1e-12, key
pd.DataFrame({f"{data.n_behaviors} behaviors": ours,
              f"`{data.behavior_names[top_behavior - 1]}` vs other": merged_table}).T.round(4)

# %% [markdown] tags=["solution"]
# **Solution 3.** A permutation keeps the counts of every item and of every behavior, so H(I)
# and H(B) are unchanged exactly; only the pairing, hence the conditionals and I(I;B), moves.
# Shuffled data have no item–behavior link, yet the plug-in estimate of I(I;B) stays positive:
# with |I|·|B| cells and finite n, chance imbalances look like information. Miller–Madow's
# first-order bias predicts that amount. The last line applies the same estimate to the
# paper's datasets (from Table 2's counts): it asks how much of Table 1's I(I;B) could be
# chance there.

# %% tags=["solution"]
shuffled = entropy_table(data.seq_items, np.random.default_rng(seed).permutation(data.seq_behaviors))
assert shuffled["H(I)"] == ours["H(I)"] and shuffled["H(B)"] == ours["H(B)"]
n_items_seen, n = len(np.unique(data.seq_items)), len(data.seq_items)
bias = (n_items_seen - 1) * (data.n_behaviors - 1) / (2 * n)
expect(shuffled["I(I;B)"] < ours["I(I;B)"], "shuffling the behaviors to lower I(I;B)",
       "on a small dataset most of the measured I(I;B) can be chance", dataset=dataset)
paper_bias = {k: (v["items"] - 1) * (len(v["behaviors"].split(", ")) - 1) / (2 * v["interactions"])
              for k, v in paper_table2.items()}
print(f"{dataset}: I(I;B) {ours['I(I;B)']:.4f}, shuffled {shuffled['I(I;B)']:.4f}, "
      f"Miller–Madow bias {bias:.4f} ({bias / ours['I(I;B)']:.0%} of the measured value)")
print("the paper's datasets, if every item occurs: " + ", ".join(
    f"{k} bias {b:.4f} ({b / paper_table1[k]['I(I;B)']:.0%} of I(I;B))" for k, b in paper_bias.items()))
