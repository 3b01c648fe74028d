"""Full-ranking evaluation: Recall@K and NDCG@K over all N items (paper Section 4.1.2, Table 3).

Every model implements ``score_all(batch, generator=None) -> (B, N)`` (column j scores item id j+1), so this
module has no per-model special cases. Each row of a prefix batch is one prediction: the
target item ``target`` under its own behavior ``target_behavior``. We rank the target among
ALL N items (no sampled candidates) and report, besides the overall averages, the same
metrics per target behavior (the paper does not report that breakdown; we do).

Items already in the user's history are NOT removed from the ranking: in multi-behavior data
a user who viewed an item often buys it later, so repeat interactions across behaviors are
the very signal we want to measure, not a leak.

Glossary: B batch, L sequence length, N items, K cut-off.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm  # plain bars: no ipywidgets needed in notebooks

from ..support.runtime import model_device, to_device

__all__ = [
    "rank_of_target",
    "recall_ndcg",
    "evaluate",
    "recommend_topk",
    "recommend",
    "format_metrics_table",
    "mean_std",
]


def _check_scores(scores: torch.Tensor) -> None:
    if scores.dim() != 2:
        raise ValueError(f"scores must be (B, N), got shape {tuple(scores.shape)}")
    if torch.isnan(scores).any():
        raise ValueError(
            "scores contain NaN: the model's score_all produced NaN "
            "(check its loss for divergence, lower the learning rate, or inspect the inputs)"
        )


def rank_of_target(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """0-based rank of each row's target among all N items (0 = ranked first).

    ``scores`` is (B, N) with column j the score of item id j+1; ``target`` is (B,) item ids
    in 1..N. The rank is the number of OTHER items whose score is >= the target's score.

    Ties are broken pessimistically: every other item with a score equal to the target's
    counts as ranked above it. Any other rule lets a degenerate model look good (a model that
    gives every item the same score would otherwise put the target at rank 0 and score a
    perfect Recall@1); with the pessimistic rule a constant-score model gets rank N-1 and
    zero on every metric with K < N, and a tie can never help a model.

    Raises ``ValueError`` on NaN scores (a NaN compares false with everything and would
    silently rank the target first) and on target ids outside 1..N.
    """
    _check_scores(scores)
    B, N = scores.shape
    if target.shape != (B,):
        raise ValueError(f"target must be (B,) = ({B},), got shape {tuple(target.shape)}")
    if bool(((target < 1) | (target > N)).any()):
        raise ValueError(f"target item ids must lie in 1..N = 1..{N} (0 is padding)")
    target_score = scores.gather(1, (target - 1).long().unsqueeze(1))  # (B, 1)
    at_or_above = (scores >= target_score).sum(dim=1)  # (B,) includes the target itself
    return (at_or_above - 1).long()


def recall_ndcg(ranks: torch.Tensor, ks: Sequence[int] = (5, 10, 20, 50)) -> dict[str, torch.Tensor]:
    r"""Per-row Recall@K and NDCG@K from 0-based target ranks (B,).

    With a single relevant item per row (the held-out target), with 0-based rank :math:`r`:

    .. math::

        \mathrm{Recall@K} = \mathbb{1}[r < K] \quad (= \mathrm{HR@K})

        \mathrm{NDCG@K} = \frac{\mathbb{1}[r < K]}{\log_2(r + 2)}

    (the ideal DCG is 1, the target at rank 0). K larger than N is allowed: every row hits.
    Returns ``{"Recall@K": (B,), "NDCG@K": (B,)}`` float tensors for each K in ``ks``.
    """
    ranks_f = ranks.float()  # (B,)
    gain = 1.0 / torch.log2(ranks_f + 2.0)  # (B,)
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        if k < 1:
            raise ValueError(f"every K must be >= 1, got {k}")
        hit = (ranks < k).float()  # (B,)
        out[f"Recall@{k}"] = hit
        out[f"NDCG@{k}"] = hit * gain
    return out


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[Mapping[str, torch.Tensor]],
    ks: Sequence[int] = (5, 10, 20, 50),
    behavior_names: Sequence[str] | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
    generator: torch.Generator | None = None,
) -> dict:
    """Average Recall@K / NDCG@K of ``model`` over prefix batches, overall and per behavior.

    ``loader`` yields prefix batches (``items``, ``behaviors``, ``target``, ``target_behavior``,
    ``user``). Each batch is moved to the model's device (taken from its parameters or
    buffers; a model with neither, e.g. a popularity table in plain Python, uses ``device``
    or the CPU), scored with ``model.score_all`` under ``torch.no_grad()`` in eval mode, and
    reduced at once to (B,) ranks: memory stays O(number of users), never (users, N).

    ``behavior_names[b - 1]`` names behavior id b (default: ``str(b)``). Returns::

        {"Recall@K": float, "NDCG@K": float, ..., "n": users,
         "per_behavior": {name: {"Recall@K": ..., "NDCG@K": ..., "n": count}}}

    ``per_behavior`` lists only behaviors that occur as a target. Sampling models draw from
    ``generator`` (on the model's device), never from the global generators. The model's
    training mode is restored afterwards.
    """
    dev = model_device(model, default=device)
    was_training = model.training
    model.eval()
    ranks_parts: list[torch.Tensor] = []
    behavior_parts: list[torch.Tensor] = []
    try:
        for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
            batch = to_device(batch, dev)
            scores = model.score_all(batch, generator)  # (B, N)
            ranks_parts.append(rank_of_target(scores, batch["target"]).cpu())  # (B,)
            behavior_parts.append(batch["target_behavior"].long().cpu())  # (B,)
    finally:
        model.train(was_training)
    if not ranks_parts:
        raise ValueError("the evaluation loader yielded no batches: is the split empty?")
    ranks = torch.cat(ranks_parts)  # (n_users,)
    target_behavior = torch.cat(behavior_parts)  # (n_users,)
    per_row = recall_ndcg(ranks, ks)

    results: dict = {name: float(v.mean()) for name, v in per_row.items()}
    results["n"] = int(ranks.numel())
    per_behavior: dict[str, dict] = {}
    for b in torch.unique(target_behavior).tolist():  # loop over behaviors (a handful), not rows
        rows = target_behavior == b
        name = behavior_names[b - 1] if behavior_names is not None else str(b)
        metrics = {metric: float(v[rows].mean()) for metric, v in per_row.items()}
        metrics["n"] = int(rows.sum())
        per_behavior[name] = metrics
    results["per_behavior"] = per_behavior
    return results


def recommend_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k item ids (1..N) per row, best first, from (B, N) scores.

    History items are kept (see the module docstring). Ties are returned in
    ``torch.topk`` order, which is unspecified.
    """
    _check_scores(scores)
    N = scores.shape[1]
    if not 1 <= k <= N:
        raise ValueError(f"k must lie in 1..N = 1..{N}, got {k}")
    return torch.topk(scores, k, dim=1).indices + 1  # (B, k) column j -> item id j+1


@torch.no_grad()
def recommend(model: nn.Module, items, behaviors, behavior: int, *, n_items: int,
              n_behaviors: int, max_len: int, k: int = 10, titles: Sequence[str] | None = None,
              item_keys: Sequence | None = None, user: int | None = None,
              generator: torch.Generator | None = None) -> list[tuple[object, str]]:
    """Top-k (item, name) for ONE history under the target ``behavior``, for any model with
    ``score_all`` (FatsMB, the MBAE, the baselines).

    ``items``/``behaviors`` (L_hist,) are the history in internal ids, oldest first, without
    padding; the last L-1 are kept, then the [mask] item carrying the target behavior
    (Algorithm 2's input). With ``item_keys`` (``SequenceData.item_keys``) each item is
    returned as the dataset's own id (its raw key); without, as the internal id 1..N. Names
    come from ``titles`` (indexed by item id − 1) or are those ids. Items already in the
    history are not removed. Sampling models draw from ``generator``. ``user``: the user's
    index in the data, for the models that know users by id (the graph baselines, PBAT).
    :meth:`fatsmb_lib.training.context.Context.recommend` does all this from a raw user id.
    """
    if not 1 <= behavior <= n_behaviors:
        raise ValueError(f"behavior must be in 1..{n_behaviors}, got {behavior}")
    device = model_device(model)
    items = torch.as_tensor(items, device=device).long()[-(max_len - 1):]
    behaviors = torch.as_tensor(behaviors, device=device).long()[-(max_len - 1):]
    pad = torch.zeros(max_len - 1 - len(items), dtype=torch.long, device=device)
    last = torch.tensor([[n_items + 1, behavior]], device=device)   # [mask] item, target behavior
    batch = {  # (1, L), left padding
        "items": torch.cat([pad, items, last[:, 0]])[None],
        "behaviors": torch.cat([pad, behaviors, last[:, 1]])[None],
        "target_behavior": last[:, 1],
    }
    if user is not None:
        batch["user"] = torch.tensor([user], device=device)
    was_training = model.training
    model.eval()
    try:
        top = recommend_topk(model.score_all(batch, generator), k)[0].tolist()
    finally:
        model.train(was_training)
    ids = top if item_keys is None else np.asarray(item_keys)[np.asarray(top) - 1].tolist()
    return [(key, titles[i - 1] if titles else str(key)) for i, key in zip(top, ids)]


def _format_cell(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, tuple):
        mean, std = value
        return f"{mean:.4f} ± {std:.4f}"
    return f"{value:.4f}"


def format_metrics_table(
    results: Mapping[str, Mapping],
    keys: Sequence[str] = ("Recall@10", "NDCG@10", "Recall@20", "NDCG@20"),
    label: str = "model",
) -> str:
    """A Markdown table, one row per model: ``results`` maps a model name to its metrics;
    ``label`` heads the first column.

    A metric may be a float or a ``(mean, std)`` pair from :func:`mean_std`
    (shown as ``mean ± std``), or a string shown as it is; a missing metric shows as ``—``.
    """
    lines = [
        f"| {label} | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for name, metrics in results.items():
        cells = [_format_cell(metrics.get(key)) for key in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mean_std(runs: Sequence[Mapping]) -> dict:
    """Aggregate metric dicts from several seeds: each number -> ``(mean, std)``.

    Nested dicts (``per_behavior``) are aggregated key by key, recursively. ``std`` is the
    sample standard deviation (ddof = 1), 0.0 for a single run. All runs must have the same keys.
    """
    if not runs:
        raise ValueError("mean_std needs at least one metrics dict")
    keys = list(runs[0].keys())
    for run in runs[1:]:
        if set(run.keys()) != set(keys):
            raise ValueError(
                f"runs have different metric keys: {sorted(keys)} vs {sorted(run.keys())}; "
                "aggregate only runs of the same evaluation"
            )
    out: dict = {}
    for key in keys:
        values = [run[key] for run in runs]
        if isinstance(values[0], Mapping):
            out[key] = mean_std(values)
        else:
            arr = np.asarray(values, dtype=np.float64)
            std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
            out[key] = (float(arr.mean()), std)
    return out
