"""Where does the diffusion pay? FatsMB against its own MBAE on a map of synthetic data.

The paper's answer to "why diffuse at all" is the transfer from behavior-agnostic to
behavior-specific preferences (Section 1, Figure 1), most of all when the target behavior is
sparse (Figure 7). On ml100k FatsMB ties its own MBAE, so this study asks where, if anywhere,
it does better. The generator (``data.synthetic``) plants a behavior-agnostic preference and
has two knobs that move what the diffusion is meant to exploit:

- ``behavior_influence`` λ (step 4c): how strongly the target behavior decides the next item,
  from 0 (behavior irrelevant) to 1 (the item names its behavior);
- ``sparse_behavior_share`` s of ``neg`` (``sparse_behavior=0``): how rare one behavior is
  (None: its natural share in the ``map`` preset, about 0.14).

Each cell of the grid is a dataset named by its knobs (``datasets.synthetic_variant``). For
every cell and seed the study trains, under one profile (``default``: the notebooks' budget),
the MBAE (stage 1, scoring by decoding z_b directly), FatsMB (stages 2-3 on that MBAE), SASRec
and the behavior-aware SASRec, each selected on validation, and records validation and test
NDCG@10, overall and on the test users whose target is the sparse behavior. FatsMB beats its
MBAE in a cell when its test NDCG@10 leads by more than one seed-std (``verdicts``).

``python -m fatsmb_lib.studies.diffusion_map --seeds 0 1 2`` writes the ledger
``reports/synthetic-map/diffusion_map.json`` (a ``studies.ledger.Ledger``: an interrupted
run resumes, a finished run is never repeated), its table ``.md`` and the map ``.png``;
checkpoints go to ``runs/diffusion-map-<profile>/<cell>/``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ..data.datasets import load_interactions, synthetic_variant
from ..support.checkpoints import write_text
from ..support.paths import project_root
from ..training.context import Context
from ..training.evaluate import format_metrics_table
from ..training.peers import BEHAVIOR_SASREC, SASREC
from ..training.registry import train
from ..training.run import open_run
from ..training.stages import finetune_decoder, prefix_latents, train_denoiser, train_mbae
from .entropy import entropy_table
from .ledger import Ledger
from .verdicts import MIN_SEEDS, format_mean_std, percent_change, summarize, verdict

PRESET = "map"
SPARSE = "neg"                         # the behavior made sparse (index 0 of the preset's)
INFLUENCES = (0.0, 0.25, 0.5, 1.0)     # λ: behavior irrelevant ... behavior decides
SHARES = (None, 0.03)                  # s of neg: natural (about 0.14) ... rare
MODELS = ("MBAE", "FatsMB", "SASRec", "BehaviorSASRec")
REPORT = "diffusion_map"


def cell_dataset(influence: float, share: float | None) -> str:
    """The dataset name of one cell: the ``map`` preset with λ and the sparse share set."""
    return synthetic_variant(PRESET, behavior_influence=influence, sparse_behavior=0,
                             sparse_behavior_share=share)


def run_cell(ctx: Context, log=print) -> dict[str, dict]:
    """{model: {"valid", "test", "test_sparse", "seconds"}} for one cell and seed: NDCG@10 on
    validation, on test, and on the test users whose target behavior is ``SPARSE``."""
    mbae, stage1 = train_mbae(ctx)
    latents = prefix_latents(mbae, ctx)
    fatsmb, stage2 = train_denoiser(mbae, ctx, latents=latents)
    stage3 = finetune_decoder(fatsmb, ctx, latents=latents)
    trained = {"MBAE": (mbae, stage1.seconds),
               "FatsMB": (fatsmb, [*stage1.seconds, *stage2.seconds, *stage3.seconds])}
    for name, spec in (("SASRec", SASREC), ("BehaviorSASRec", BEHAVIOR_SASREC)):
        model, history = train(spec, ctx)
        trained[name] = (model, history.seconds)
    row = {}
    for name, (model, seconds) in trained.items():
        valid, test = ctx.evaluate(model, "valid"), ctx.evaluate(model, "test")
        row[name] = {"valid": valid["NDCG@10"], "test": test["NDCG@10"],
                     "test_sparse": test["per_behavior"].get(SPARSE, {}).get("NDCG@10"),
                     "seconds": round(float(np.sum(seconds)), 1)}
        log(f"  {ctx.profile.dataset} seed {ctx.seed} {name:<15} valid {row[name]['valid']:.4f} "
            f"test {row[name]['test']:.4f}")
    return row


def information_share(dataset: str, data_dir: str | Path | None = None) -> float:
    """I(I;B) / H(B) over all of ``dataset``'s interactions (Table 1's quantities,
    ``studies.entropy``): the share of the behavior's uncertainty that the item removes, the
    axis on which ml100k is placed on the map."""
    interactions = load_interactions(dataset, data_dir)
    table = entropy_table(interactions.items, interactions.behaviors)
    return table["I(I;B)"] / table["H(B)"]


def cell_key(influence: float, share: float | None) -> str:
    """The ledger's name of a cell."""
    return f"influence={influence} share={share}"


def cell_knobs(key: str) -> tuple[float, float | None]:
    """(influence, share) of a ledger cell: the inverse of :func:`cell_key`."""
    influence, share = (part.split("=")[1] for part in key.split())
    return float(influence), None if share == "None" else float(share)


def ledger_grid(ledger: Ledger, influences=(), shares=()) -> tuple[list[float], list]:
    """The influences and the shares of every cell in ``ledger`` and of the given ones, in
    order (the natural share, None, first): the grid a report covers, whichever process, with
    whichever part of the grid, wrote it last."""
    knobs = [cell_knobs(key) for key in ledger.cells]
    return (sorted({i for i, _ in knobs} | set(influences)),
            sorted({s for _, s in knobs} | set(shares), key=lambda s: (s is not None, s or 0.0)))


def summarize_cell(runs: dict[str, dict], metric: str = "test") -> dict:
    """Mean ± std per model of ``metric`` over the cell's seeds, and FatsMB against its MBAE
    (percent change and the one-std verdict); None where fewer than ``MIN_SEEDS`` seeds."""
    values = {name: [run[name][metric] for run in runs.values()] for name in MODELS}
    if len(runs) < MIN_SEEDS or any(v is None for vs in values.values() for v in vs):
        return {"seeds": len(runs), "models": None, "gain": None, "verdict": None}
    models = {name: summarize(vs) for name, vs in values.items()}
    base = models["MBAE"]
    return {"seeds": len(runs), "models": models,   # a change from 0 has no percentage
            "gain": percent_change(models["FatsMB"], base) if base[0] > 0 else float("nan"),
            "verdict": verdict(models["FatsMB"], base)}


def map_figure(ledger: Ledger, influences, shares, metric: str = "test") -> plt.Figure:
    """FatsMB's change against its MBAE (percent of the MBAE's NDCG@10) per cell, each cell
    labelled with the verdict of the one-std rule; blank where a cell has too few seeds."""
    gain = np.full((len(shares), len(influences)), np.nan)
    fig, ax = plt.subplots(figsize=(1.6 * len(influences) + 2, 1.2 * len(shares) + 1.5))
    for i, share in enumerate(shares):
        for j, influence in enumerate(influences):
            cell = summarize_cell(ledger.runs(cell_key(influence, share)), metric)
            label = f"{cell['seeds']} seed(s)"
            if cell["verdict"] is not None:
                gain[i, j] = cell["gain"]
                label = f"{cell['gain']:+.1f}%\n{cell['verdict']}"
            ax.text(j, i, label, ha="center", va="center", fontsize=9)
    bound = max(5.0, float(np.nanmax(np.abs(gain))) if np.isfinite(gain).any() else 5.0)
    image = ax.imshow(np.ma.masked_invalid(gain), cmap="RdBu", vmin=-bound, vmax=bound)
    ax.set_xticks(range(len(influences)), [str(x) for x in influences])
    ax.set_yticks(range(len(shares)), ["natural" if s is None else str(s) for s in shares])
    ax.set_xlabel("behavior influence λ (0: behavior irrelevant, 1: behavior decides the item)")
    ax.set_ylabel(f"share of {SPARSE}")
    ax.set_title(f"FatsMB vs its MBAE, {metric} NDCG@10 (% change; verdict: one-std rule)")
    fig.colorbar(image, ax=ax, label="% change")
    fig.tight_layout()
    return fig


def write_report(out: Path, ledger: Ledger, influences, shares) -> None:
    """The map's table (``.md``) and figure (``.png``) from the ledger's finished runs."""
    table = {}
    for share in shares:
        for influence in influences:
            runs = ledger.runs(cell_key(influence, share))
            cell, sparse = summarize_cell(runs), summarize_cell(runs, "test_sparse")
            if cell["models"] is None:
                continue
            table[f"λ {influence}, {SPARSE} share {share or 'natural'}"] = {
                **{name: format_mean_std(cell["models"][name]) for name in MODELS},
                "FatsMB vs MBAE": f"{cell['gain']:+.1f}% ({cell['verdict']})",
                f"on {SPARSE} users": (f"{sparse['gain']:+.1f}% ({sparse['verdict']})"
                                       if sparse["models"] else "—")}
    text = (f"# Where the diffusion pays: FatsMB vs its MBAE on synthetic-{PRESET} "
            f"(profile `{ledger.meta['profile']}`, test NDCG@10, mean ± std over seeds)\n\n"
            + format_metrics_table(table, keys=(*MODELS, "FatsMB vs MBAE", f"on {SPARSE} users"),
                                   label="cell")
            + "\n")
    write_text(out / f"{REPORT}.md", text)
    fig = map_figure(ledger, influences, shares)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{REPORT}.png", dpi=120)
    plt.close(fig)


def run_map(seeds: list[int], profile: str = "default", influences=INFLUENCES, shares=SHARES,
            device: str = "auto", run_dir: Path | None = None, out_dir: Path | None = None,
            data_dir: str | Path | None = None, log=print, **overrides) -> Ledger:
    """Train every cell of the grid for every seed (runs already in the ledger are kept) and
    rewrite the report after each. ``overrides`` change profile fields (for tests)."""
    root = project_root()
    out = out_dir or root / "reports" / f"synthetic-{PRESET}"
    run_dir = run_dir or root / "runs" / f"diffusion-map-{profile}"
    ledger = Ledger(out / f"{REPORT}.json", profile=profile, preset=PRESET)
    for influence in influences:
        for share in shares:
            dataset, cell = cell_dataset(influence, share), cell_key(influence, share)
            for seed in seeds:
                if ledger.done(cell, seed):
                    continue
                start = time.perf_counter()
                ctx = open_run(dataset, profile, device, run_dir / dataset, data_dir, seed,
                               **overrides)
                ledger.record(cell, seed, run_cell(ctx, log))
                log(f"{dataset} seed {seed}: {time.perf_counter() - start:.0f} s")
                write_report(out, ledger, *ledger_grid(ledger, influences, shares))
    write_report(out, ledger, *ledger_grid(ledger, influences, shares))
    return ledger


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--influences", type=float, nargs="+", default=list(INFLUENCES))
    parser.add_argument("--shares", nargs="+", default=[str(s) for s in SHARES],
                        help="shares of the sparse behavior; None: its natural share")
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    shares = [None if s == "None" else float(s) for s in args.shares]
    run_map(args.seeds, args.profile, args.influences, shares, args.device, out_dir=args.out_dir)


if __name__ == "__main__":
    main()
