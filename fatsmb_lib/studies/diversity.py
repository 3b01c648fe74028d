"""Does generation give diversity? The lists a model recommends, measured four ways.

The paper argues that a generative recommender is not confined by candidate sets and history,
and so "achieves accuracy and diversity" (Figure 1, abstract), and that a higher guidance
strength ω may "lead to ... sparse diversity generation" (Section 4.5.5). Neither is measured
there. For the same test users, each under their own target behavior, this module measures a
model's top-k lists by:

- **intra-list diversity**: 1 − the mean cosine similarity of the pairs of items in a list,
  in one fixed item space for every model (the item table of the run's MBAE, so that no model
  is judged in its own geometry);
- **coverage**: the share of the catalogue that appears in any list;
- **popularity**: the mean popularity percentile of recommended items (training counts; 1 is
  the most popular item), lower meaning a longer tail;
- **overlap across behaviors**: the Jaccard index of one user's lists under two different
  target behaviors, averaged over the pairs of behaviors (1: the behavior changes nothing);
- **overlap across samples** (sampling models only): the Jaccard index of two lists drawn with
  different generators for the same user and behavior.

Per-user values get a bootstrap 95% interval over users (:func:`bootstrap_interval`): the
lists of one trained model are what is measured, so resampling users is the uncertainty that
applies; across-seed spreads come from training several models.
"""
from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..models.contract import item_weight
from ..support.checkpoints import write_text
from ..support.paths import project_root
from ..support.runtime import make_generator, model_device, to_device
from ..training.context import Context
from ..training.evaluate import format_metrics_table, recommend_topk
from ..training.peers import train_baseline
from ..training.run import open_run
from ..training.stages import finetune_decoder, prefix_latents, train_denoiser, train_mbae

OMEGAS = (0.0, 1.0, 2.0, 5.0)        # Fig. 8e's grid of guidance strengths
PEERS = ("SASRec", "BehaviorSASRec", "MB-STR")
METRICS = ("intra-list diversity", "coverage", "popularity percentile", "overlap across behaviors",
           "overlap across samples", "test NDCG@10")


@torch.no_grad()
def top_lists(model: nn.Module, batches: Iterable[dict], k: int = 10,
              generator: torch.Generator | None = None, behavior: int | None = None
              ) -> torch.Tensor:
    """(U, k) item ids (1..N) of the top-k list of every row of prefix ``batches``, under each
    row's own target behavior, or under ``behavior`` for every row (its [mask] column then
    carries that behavior)."""
    device = model_device(model)
    was_training = model.training
    model.eval()
    lists = []
    try:
        for batch in batches:
            batch = to_device(batch, device)
            if behavior is not None:
                target = torch.full_like(batch["target_behavior"], behavior)
                behaviors = batch["behaviors"].clone()
                behaviors[:, -1] = target
                batch = {**batch, "behaviors": behaviors, "target_behavior": target}
            lists.append(recommend_topk(model.score_all(batch, generator), k).cpu())  # (B, k)
    finally:
        model.train(was_training)
    return torch.cat(lists)


def intra_list_diversity(lists: torch.Tensor, item_vectors: torch.Tensor) -> np.ndarray:
    """(U,) 1 − mean pairwise cosine similarity of each list's items; ``lists`` (U, k) ids
    1..N, ``item_vectors`` (N, D) row i − 1 for item i."""
    unit = torch.nn.functional.normalize(item_vectors.float(), dim=-1)[lists - 1]  # (U, k, D)
    cosine = unit @ unit.transpose(1, 2)                                          # (U, k, k)
    k = lists.shape[1]
    mean_pair = (cosine.sum((1, 2)) - cosine.diagonal(dim1=1, dim2=2).sum(1)) / (k * (k - 1))
    return (1.0 - mean_pair).numpy()


def coverage(lists: torch.Tensor, n_items: int) -> float:
    """The share of the N items that appear in at least one list."""
    return len(torch.unique(lists)) / n_items


def popularity_percentile(lists: torch.Tensor, counts: np.ndarray) -> np.ndarray:
    """(U,) mean popularity percentile of each list's items: ``counts`` (N,) training counts
    of items 1..N; an item's percentile is the share of items it is at least as popular as
    (1.0: the most popular)."""
    order = np.argsort(np.argsort(counts, kind="stable"), kind="stable")  # rank 0..N-1
    percentile = (order + 1) / len(counts)                                # (N,)
    return percentile[lists.numpy() - 1].mean(1)


def jaccard(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """(U,) |A ∩ B| / |A ∪ B| of the rows of two (U, k) lists of distinct ids."""
    shared = (a[:, :, None] == b[:, None, :]).any(-1).sum(1).float()  # (U,)
    k = a.shape[1]
    return (shared / (2 * k - shared)).numpy()


def bootstrap_interval(values: np.ndarray, n_resamples: int = 1000, seed: int = 0
                       ) -> tuple[float, float, float]:
    """(mean, low, high): the mean of per-user ``values`` and its 95% bootstrap interval over
    users (percentile method)."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n_resamples, len(values)))].mean(1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(values.mean()), float(low), float(high)


def measure(ctx: Context, model: nn.Module, item_vectors: torch.Tensor, counts: np.ndarray,
            k: int = 10, sampling: bool = False) -> dict:
    """Every metric of the module docstring for ``model``'s top-k lists of the test users
    (under their own target behavior), with bootstrap intervals; test NDCG@10 beside them."""
    loader = ctx.loader("test")
    lists = top_lists(model, loader, k, make_generator(ctx.seed, ctx.device))       # (U, k)
    by_behavior = [top_lists(model, loader, k, make_generator(ctx.seed, ctx.device), b)
                   for b in range(1, ctx.data.n_behaviors + 1)]
    across = np.mean([jaccard(a, b) for a, b in itertools.combinations(by_behavior, 2)], 0)
    row = {"intra-list diversity": bootstrap_interval(intra_list_diversity(lists, item_vectors)),
           "coverage": coverage(lists, ctx.data.n_items),
           "popularity percentile": bootstrap_interval(popularity_percentile(lists, counts)),
           "overlap across behaviors": bootstrap_interval(across),
           "test NDCG@10": ctx.evaluate(model, "test")["NDCG@10"]}
    if sampling:   # a second draw of the same lists with another generator
        again = top_lists(model, loader, k, make_generator(ctx.seed + 1, ctx.device))
        row["overlap across samples"] = bootstrap_interval(jaccard(lists, again))
    return row


def run_diversity(dataset: str = "ml100k", profile: str = "default", device: str = "auto",
                  run_dir: Path | None = None, out_dir: Path | None = None, seed: int = 0,
                  omegas=OMEGAS, peers=PEERS, log=print, **overrides) -> dict:
    """FatsMB at each ω and the ``peers`` (trained or reloaded in ``run_dir``, by default the
    committed run's folder ``reports/<dataset>/<profile>/``), measured on the test users; the
    report ``<out_dir>/diversity.{json,md}`` (default ``reports/<dataset>/``).

    ω acts at sampling only: stage 3 was fine-tuned at the profile's ω, so ω ≠ that is the
    same trained model sampled differently (notebook 04 shows what retraining stage 3 per ω
    changes)."""
    root = project_root() / "reports" / dataset
    ctx = open_run(dataset, profile, device, run_dir or root / profile, seed=seed, **overrides)
    mbae, _ = train_mbae(ctx)
    latents = prefix_latents(mbae, ctx)
    fatsmb, _ = train_denoiser(mbae, ctx, latents=latents)
    finetune_decoder(fatsmb, ctx, latents=latents)
    item_vectors = item_weight(mbae.encoder.item_embedding).detach().cpu()        # (N, D)
    counts = np.bincount(ctx.data.split().train_items, minlength=ctx.data.n_items + 1)[1:]
    rows = {"MBAE": measure(ctx, mbae, item_vectors, counts)}
    for name in peers:
        rows[name] = measure(ctx, train_baseline(ctx, name)[0], item_vectors, counts)
    for omega in omegas:
        with fatsmb.sampler(omega=omega):
            rows[f"FatsMB ω={omega:g}"] = measure(ctx, fatsmb, item_vectors, counts,
                                                  sampling=True)
        log(f"FatsMB ω={omega:g}: {rows[f'FatsMB ω={omega:g}']}")
    report = {"dataset": dataset, "profile": profile, "seed": seed, "k": 10,
              "profile_omega": ctx.profile.omega,
              "uncertainty": "bootstrap 95% interval over test users (1000 resamples)",
              "models": rows}
    out = out_dir or root
    write_text(out / "diversity.json", json.dumps(report, indent=2) + "\n")
    shown = {name: {metric: ("—" if metric not in row else f"{row[metric]:.4f}"
                             if isinstance(row[metric], float) else
                             "{:.3f} [{:.3f}, {:.3f}]".format(*row[metric]))
                    for metric in METRICS} for name, row in rows.items()}
    write_text(out / "diversity.md",
               f"# Diversity of the top-10 lists on {dataset} (profile `{profile}`, seed {seed}; "
               f"[low, high]: bootstrap 95% over test users)\n\n"
               + format_metrics_table(shown, METRICS) + "\n")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml100k")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    run_diversity(args.dataset, args.profile, args.device, seed=args.seed)


if __name__ == "__main__":
    main()
