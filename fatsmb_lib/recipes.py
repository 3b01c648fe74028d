"""How a Cloze model is trained: named recipes, and the study that chose ours.

``python -m fatsmb_lib.recipes --dataset ml100k --seeds 0 1`` trains the MBAE (and BERT4Rec)
under a sequence of recipe variants, each differing from the one before it in ONE setting,
and records per variant: best validation NDCG@10 (mean ± std over seeds; the test item is
never looked at), the epoch it was reached, rows seen, wall time and the validation curve.
It writes ``reports/<dataset>/recipe_study.json`` and ``.md``; notebook 02 draws the curves.
Checkpoints go to ``runs/recipes-<dataset>-<profile>/``, so an interrupted study resumes.

A recipe is a named bundle of profile fields (``config.RECIPES``); ``open_run(recipe=...)``
applies one before any other override, so the paper's recipe is one setting away.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from .batches import ClozeView
from .checkpoints import atomic_write
from .config import RECIPES, project_root
from .evaluate import format_metrics_table
from .run import Context, open_run
from .stages import train_bert4rec, train_mbae

def study_steps() -> list[tuple[str, dict]]:
    """The variants in order: each adds one change to the previous one. Windows that overlap
    multiply the rows of an epoch (stride 5: about 10x the paper's, stride 1: about 45x on
    ml100k), so those steps get fewer epochs; the study reports rows seen beside each score."""
    paper = RECIPES["paper"]
    every_5 = {**paper, "window_stride": 5, "stage1_epochs": 25}
    return [
        ("paper recipe", paper),
        ("+ windows every 5 items", every_5),
        ("+ half the rows mask only their last item", {**every_5, "last_only_prob": 0.5}),
        ("+ a window ending at every item", {**every_5, "last_only_prob": 0.5,
                                             "window_stride": 1, "stage1_epochs": 15}),
    ]


def _row(history, rows_per_epoch: int) -> dict:
    epochs, values = history.metric(history.monitor)
    return {"best": history.best_value, "best_epoch": history.best_epoch,
            "epochs": len(history.epochs), "rows_seen": rows_per_epoch * len(history.epochs),
            "seconds": float(np.sum(history.seconds)),
            "curve": [[epoch * rows_per_epoch for epoch in epochs], values]}  # rows seen, NDCG


def run_step(ctx: Context, model: str) -> dict:
    """Train (or reload) one model under ``ctx``'s profile; its validation summary."""
    rows = len(ClozeView(ctx.data, ctx.profile.max_len, ctx.profile.window_stride))
    _, history = (train_mbae if model == "mbae" else train_bert4rec)(ctx)
    return _row(history, rows)


def run_study(dataset: str, seeds: list[int], profile: str = "default",
              models: tuple[str, ...] = ("mbae", "bert4rec"), device: str = "auto",
              data_dir: str = "data", log=print, steps: list[tuple[str, dict]] | None = None,
              run_dir: Path | None = None, out_dir: Path | None = None) -> dict:
    """Train every model of every step for every seed (resuming finished checkpoints) and write
    the report to ``<out_dir>/recipe_study.{json,md}`` (default ``reports/<dataset>``)."""
    root = project_root()
    run_dir = run_dir or root / "runs" / f"recipes-{dataset}-{profile}"
    results: dict[str, dict] = {}
    start = time.perf_counter()
    for name, overrides in steps or study_steps():
        for model in models:
            runs = []
            for seed in seeds:
                ctx = open_run(dataset, profile, device, run_dir, root / data_dir, seed, **overrides)
                runs.append(run_step(ctx, model))
                log(f"{name:<45} {model:<9} seed {seed}: valid NDCG@10 {runs[-1]['best']:.4f} "
                    f"(epoch {runs[-1]['best_epoch']}, {runs[-1]['seconds']:.0f} s)")
            best = np.array([r["best"] for r in runs])
            results.setdefault(name, {})[model] = {
                "overrides": overrides, "valid_ndcg10": (float(best.mean()), float(best.std(ddof=1)) if len(best) > 1 else 0.0),
                "per_seed": runs}
    report = {"dataset": dataset, "profile": profile, "seeds": seeds,
              "minutes": round((time.perf_counter() - start) / 60, 1), "steps": results}
    out = out_dir or root / "reports" / dataset
    atomic_write(out / "recipe_study.json", lambda f: f.write(json.dumps(report, indent=2).encode()))
    table = {f"{name} ({model})": {"valid NDCG@10": tuple(r["valid_ndcg10"]),
                                   "best epoch": float(np.mean([s["best_epoch"] for s in r["per_seed"]]))}
             for name, per_model in results.items() for model, r in per_model.items()}
    text = (f"# {dataset}: Cloze recipe study (profile `{profile}`, seeds {seeds}, validation only)\n\n"
            + format_metrics_table(table, keys=("valid NDCG@10", "best epoch")) + "\n")
    atomic_write(out / "recipe_study.md", lambda f: f.write(text.encode()))
    log(text)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml100k")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--models", nargs="+", default=["mbae", "bert4rec"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", default="data")
    args = parser.parse_args(argv)
    run_study(args.dataset, args.seeds, args.profile, tuple(args.models), args.device, args.data_dir)


if __name__ == "__main__":
    main()
