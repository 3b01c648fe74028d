"""How a Cloze model is trained: named recipes, and the study that chose ours.

``python -m fatsmb_lib.recipes --dataset ml100k --seeds 0 1`` trains the MBAE (and BERT4Rec)
under a sequence of recipe variants, each differing from its parent step in ONE setting,
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .batches import ClozeView
from .checkpoints import atomic_write
from .config import RECIPES, project_root
from .evaluate import format_metrics_table
from .run import Context, open_run
from .stages import train_bert4rec, train_mbae

@dataclass(frozen=True)
class Step:
    """One variant of the study: its profile overrides, the step it changes ONE setting of
    (``parent``; None for the starting point) and the models it trains (None: the study's)."""

    name: str
    overrides: dict
    parent: str | None = None
    models: tuple[str, ...] | None = None


def study_steps() -> list[Step]:
    """The variants in order.

    The main line adds one change per step, from the paper's recipe to a window ending at
    every item. Windows that overlap multiply the rows of an epoch (stride 5: about 10x the
    paper's, stride 1: about 45x on ml100k), so those steps get fewer epochs; the study reports
    rows seen beside each score. The branches change one optimisation setting of the cheap
    second step (the paper's windows, half the rows last-item-only) and train the MBAE only:
    every-prefix training costs about 16 minutes per model and seed on one CPU thread, too much
    to repeat per setting here, so what they show is measured on the cheaper recipe. The
    stride-5 step trains the MBAE only, for the same reason.
    """
    paper = RECIPES["paper"]
    last = {**paper, "last_only_prob": 0.5}
    every_5 = {**last, "window_stride": 5, "stage1_epochs": 25}
    every_1 = {**last, "window_stride": 1, "stage1_epochs": 15}
    base = "+ half the rows mask only their last item"
    branch = [("100 epochs instead of 50", {"stage1_epochs": 100}),
              ("cosine learning-rate decay", {"lr_decay": "cosine"}),
              ("3 warm-up epochs", {"warmup_epochs": 3}),
              ("lr 1e-3 instead of 2e-3", {"lr": 1e-3}),
              ("dropout 0.2 instead of 0.1", {"dropout": 0.2}),
              ("batch 128 instead of 256", {"batch_size": 128}),
              ("ρ 0.4 instead of 0.2", {"rho": 0.4})]
    return [Step("paper recipe", paper),
            Step(base, last, "paper recipe"),
            Step("+ windows every 5 items", every_5, base, ("mbae",)),
            Step("+ a window ending at every item", every_1, "+ windows every 5 items"),
            *(Step(f"{base}, {name}", {**last, **change}, base, ("mbae",))
              for name, change in branch)]


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
              data_dir: str = "data", log=print, steps: list[Step] | None = None,
              run_dir: Path | None = None, out_dir: Path | None = None) -> dict:
    """Train every model of every step for every seed (resuming finished checkpoints) and write
    the report to ``<out_dir>/recipe_study.{json,md}`` (default ``reports/<dataset>``)."""
    root = project_root()
    run_dir = run_dir or root / "runs" / f"recipes-{dataset}-{profile}"
    results: dict[str, dict] = {}
    start = time.perf_counter()
    for step in steps or study_steps():
        for model in step.models or models:
            if model not in models:
                continue
            runs = []
            for seed in seeds:
                # replace, not open_run's overrides: those skip None (window_stride=None)
                ctx = open_run(dataset, profile, device, run_dir, root / data_dir,
                               seed).replace(**step.overrides)
                runs.append(run_step(ctx, model))
                log(f"{step.name:<45} {model:<9} seed {seed}: valid NDCG@10 {runs[-1]['best']:.4f} "
                    f"(epoch {runs[-1]['best_epoch']}, {runs[-1]['seconds']:.0f} s)")
            best = np.array([r["best"] for r in runs])
            results.setdefault(step.name, {})[model] = {
                "overrides": step.overrides, "parent": step.parent,
                "valid_ndcg10": (float(best.mean()), float(best.std(ddof=1)) if len(best) > 1 else 0.0),
                "per_seed": runs}
    report = {"dataset": dataset, "profile": profile, "seeds": seeds,
              "minutes": round((time.perf_counter() - start) / 60, 1), "steps": results}
    out = out_dir or root / "reports" / dataset
    atomic_write(out / "recipe_study.json", lambda f: f.write(json.dumps(report, indent=2).encode()))
    table = {f"{name} ({model})": {
        "changes one setting of": r["parent"] or "—", "valid NDCG@10": tuple(r["valid_ndcg10"]),
        "best epoch": f"{np.mean([s['best_epoch'] for s in r['per_seed']]):.1f}",
        "rows seen (M)": f"{np.mean([s['rows_seen'] for s in r['per_seed']]) / 1e6:.2f}",
        "minutes": f"{np.mean([s['seconds'] for s in r['per_seed']]) / 60:.1f}"}
        for name, per_model in results.items() for model, r in per_model.items()}
    text = (f"# {dataset}: Cloze recipe study (profile `{profile}`, seeds {seeds}, validation only)\n\n"
            + format_metrics_table(table, keys=("changes one setting of", "valid NDCG@10",
                                                "best epoch", "rows seen (M)", "minutes")) + "\n")
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
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="checkpoint folder (default runs/recipes-<dataset>-<profile>); "
                             "runs/compare-<dataset>-full shares the every-prefix models with "
                             "the full comparison")
    args = parser.parse_args(argv)
    run_study(args.dataset, args.seeds, args.profile, tuple(args.models), args.device,
              args.data_dir, run_dir=args.run_dir)


if __name__ == "__main__":
    main()
