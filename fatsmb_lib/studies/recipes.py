"""How a Cloze model is trained: named recipes, and the study that chose ours.

``python -m fatsmb_lib.studies.recipes --dataset ml100k --seeds 0 1`` trains the MBAE (and BERT4Rec)
under a sequence of recipe variants, each differing from its parent step in ONE setting,
and records per variant: best validation NDCG@10 (mean ± std over seeds; the test item is
never looked at), the epoch it was reached, rows seen, wall time and the validation curve.
It writes ``reports/<dataset>/recipe_study.json`` and ``.md``; notebook 02 draws the curves.
``--study every-prefix`` runs the branches off the every-prefix step instead (issue 21) into
``recipe_study_every_prefix.{json,md}``.

The JSON report is the study's ledger: it is rewritten after every (step, model, seed), and a
run already in it with the same settings is not trained again, so the study resumes where it
stopped even on a fresh checkout without checkpoints (``--only`` runs some steps and keeps the
others' rows). Checkpoints go to ``runs/recipes-<dataset>-<profile>/``.

A recipe is a named bundle of profile fields (``training.epochs.RECIPES``); ``open_run(recipe=...)``
applies one before any other override, so the paper's recipe is one setting away.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.batches import ClozeView
from ..support.checkpoints import write_text
from ..support.paths import project_root
from ..training.context import Context
from ..training.epochs import RECIPES
from ..training.evaluate import format_metrics_table
from ..training.peers import BERT4REC
from ..training.registry import train
from ..training.run import open_run
from ..training.stages import train_mbae


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


EVERY_PREFIX = "a window ending at every item"


def every_prefix_steps() -> list[Step]:
    """Branches off the every-prefix step (the main line's last step, ``full``'s stage 1), each
    changing ONE setting, MBAE only.

    The first study tried the optimisation settings on the paper's windows only, where the
    model sees about 2,400 rows an epoch and nothing else can show; these repeat the ones
    that might matter where it sees 98,000: more masked targets per row (ρ, on the rows that
    are not last-item-only) and a budget of 30 epochs instead of 15 (30 is also ``full``'s
    ``min_epochs``, so the run does not stop early and the best validation epoch is kept). The
    last branch departs from the paper: each position's behavior is also added at the output,
    ``h + MLP([h; e_b])``, as the behavior-aware SASRec adds the target behavior at its query
    (``encoder.BehaviorQuery``).
    """
    root = {**RECIPES["paper"], "last_only_prob": 0.5, "window_stride": 1, "stage1_epochs": 15}
    branch = [("ρ 0.4 instead of 0.2", {"rho": 0.4}),
              ("ρ 0.6 instead of 0.2", {"rho": 0.6}),
              ("30 epochs instead of 15", {"stage1_epochs": 30}),
              ("dropout 0.2 instead of 0.1", {"dropout": 0.2}),
              ("the target behavior at the query (a departure)", {"behavior_query": True})]
    return [Step(EVERY_PREFIX, root, None, ("mbae",)),
            *(Step(f"{EVERY_PREFIX}, {name}", {**root, **change}, EVERY_PREFIX, ("mbae",))
              for name, change in branch)]


STUDIES = {"paper-windows": ("recipe_study", study_steps),
           "every-prefix": ("recipe_study_every_prefix", every_prefix_steps)}


def _row(history, rows_per_epoch: int) -> dict:
    epochs, values = history.metric(history.monitor)
    return {"best": history.best_value, "best_epoch": history.best_epoch,
            "epochs": len(history.epochs), "rows_seen": rows_per_epoch * len(history.epochs),
            "seconds": float(np.sum(history.seconds)),
            "curve": [[epoch * rows_per_epoch for epoch in epochs], values]}  # rows seen, NDCG


def run_step(ctx: Context, model: str) -> dict:
    """Train (or reload) one model under ``ctx``'s profile; its validation summary."""
    rows = len(ClozeView(ctx.data, ctx.profile.max_len, ctx.profile.window_stride))
    _, history = train_mbae(ctx) if model == "mbae" else train(BERT4REC, ctx)
    return _row(history, rows)


def _ledger(path: Path) -> dict:
    """Finished runs of an earlier report at ``path``: {(step, model, seed): (overrides, row)}."""
    if not path.is_file():
        return {}
    report = json.loads(path.read_text())
    return {(name, model, run.get("seed", seed)): (result["overrides"], {"seed": seed, **run})
            for name, per_model in report["steps"].items() for model, result in per_model.items()
            for seed, run in zip(report["seeds"], result["per_seed"])}


def _summary(overrides: dict, parent: str | None, runs: list[dict]) -> dict:
    best = np.array([r["best"] for r in runs])
    return {"overrides": overrides, "parent": parent,
            "valid_ndcg10": (float(best.mean()), float(best.std(ddof=1)) if len(best) > 1 else 0.0),
            "per_seed": runs}


def _write_report(out: Path, name: str, dataset: str, profile: str, results: dict,
                  minutes: float, log=None) -> dict:
    seeds = sorted({run["seed"] for per_model in results.values() for r in per_model.values()
                    for run in r["per_seed"]})
    report = {"dataset": dataset, "profile": profile, "seeds": seeds, "minutes": minutes,
              "steps": results}
    write_text(out / f"{name}.json", json.dumps(report, indent=2))
    table = {f"{step} ({model})": {
        "changes one setting of": r["parent"] or "—", "seeds": str(len(r["per_seed"])),
        "valid NDCG@10": (tuple(r["valid_ndcg10"]) if len(r["per_seed"]) > 1  # one seed: no spread
                          else f"{r['valid_ndcg10'][0]:.4f} (one seed)"),
        "best epoch": f"{np.mean([s['best_epoch'] for s in r['per_seed']]):.1f}",
        "rows seen (M)": f"{np.mean([s['rows_seen'] for s in r['per_seed']]) / 1e6:.2f}",
        "minutes": f"{np.mean([s['seconds'] for s in r['per_seed']]) / 60:.1f}"}
        for step, per_model in results.items() for model, r in per_model.items()}
    text = (f"# {dataset}: Cloze recipe study (profile `{profile}`, seeds {seeds}, validation only)\n\n"
            + format_metrics_table(table, keys=("changes one setting of", "seeds", "valid NDCG@10",
                                                "best epoch", "rows seen (M)", "minutes")) + "\n")
    write_text(out / f"{name}.md", text)
    if log:
        log(text)
    return report


def run_study(dataset: str, seeds: list[int], profile: str = "default",
              models: tuple[str, ...] = ("mbae", "bert4rec"), device: str = "auto",
              data_dir: str | Path | None = None, log=print, steps: list[Step] | None = None,
              run_dir: Path | None = None, out_dir: Path | None = None,
              study: str = "paper-windows", only: str | None = None) -> dict:
    """Train every model of every step for every seed and write the report to
    ``<out_dir>/<study's name>.{json,md}`` (default ``reports/<dataset>``) after each run.

    Runs already in that report with the same overrides are kept, not retrained; with ``only``
    (a substring of step names) the other steps keep the rows the report has.
    """
    root = project_root()
    name, default_steps = STUDIES[study]
    run_dir = run_dir or root / "runs" / f"recipes-{dataset}-{profile}"
    out = out_dir or root / "reports" / dataset
    done = _ledger(out / f"{name}.json")
    start = time.perf_counter()
    plan = [(step, model) for step in steps or default_steps() for model in step.models or models
            if model in models]
    runs = {(step.name, model): sorted((row for (s, m, _), (overrides, row) in done.items()
                                        if (s, m) == (step.name, model) and overrides == step.overrides),
                                       key=lambda row: row["seed"])
            for step, model in plan}

    def report(log=None) -> dict:
        results: dict[str, dict] = {}
        for step, model in plan:
            if runs[step.name, model]:
                results.setdefault(step.name, {})[model] = _summary(step.overrides, step.parent,
                                                                    runs[step.name, model])
        return _write_report(out, name, dataset, profile, results,
                             round((time.perf_counter() - start) / 60, 1), log)

    for step, model in plan:
        for seed in seeds:
            finished = {row["seed"] for row in runs[step.name, model]}
            if (only and only not in step.name) or seed in finished:
                continue
            # replace, not open_run's overrides: those skip None (window_stride=None)
            ctx = open_run(dataset, profile, device, run_dir, data_dir,
                           seed).replace(**step.overrides)
            row = {"seed": seed, **run_step(ctx, model)}
            runs[step.name, model].append(row)
            log(f"{step.name:<45} {model:<9} seed {seed}: valid NDCG@10 {row['best']:.4f} "
                f"(epoch {row['best_epoch']}, {row['seconds']:.0f} s)")
            report()  # the ledger after every run: an interruption loses at most this one
    return report(log)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml100k")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--models", nargs="+", default=["mbae", "bert4rec"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", default=None, help="default: the checkout's data/")
    parser.add_argument("--study", choices=sorted(STUDIES), default="paper-windows",
                        help="paper-windows: from the paper's recipe to every prefix; "
                             "every-prefix: one-change branches off the every-prefix step")
    parser.add_argument("--only", default=None,
                        help="run only the steps whose name contains this text (the report "
                             "keeps the other steps' finished rows)")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="checkpoint folder (default runs/recipes-<dataset>-<profile>); "
                             "runs/compare-<dataset>-full shares the every-prefix models with "
                             "the full comparison")
    args = parser.parse_args(argv)
    run_study(args.dataset, args.seeds, args.profile, tuple(args.models), args.device,
              args.data_dir, run_dir=args.run_dir, study=args.study, only=args.only)


if __name__ == "__main__":
    main()
