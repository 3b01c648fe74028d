"""What training costs (Figures 9-10, Section 4.4.3): time and memory per model, one at a time.

The paper states FatsMB's complexity, O(L²d + Ld²) per sequence for the MBAE's attention and
O(Ld²) for MCGLN (Section 4.4.3), and shows its training time and memory next to the
baselines' (Appendix E, Figures 9-10), claiming them comparable. This study measures both here:

- **per model**: each model trains ONE epoch of its own batches in a fresh process (so the
  peak resident memory is its own), on the same data under the same profile; the report gives
  the epoch's seconds (validation excluded), the training rows it saw, seconds per 1,000 rows
  and the process's peak memory. FatsMB's three stages run in one process, each timed.
- **against the sequence length L and the number of items N** (``--scaling``): the MBAE's
  stage-1 epoch on generated data (:func:`scaling_dataset`: long histories, few users, so an
  epoch of every prefix takes seconds) with ``max_len`` L ∈ {25, 50, 100, 200} and, at the
  profile's L, N ∈ {1,000, ..., 8,000} items, timed per row. The attention's L² term shows as
  growth faster than linear in L once it dominates; the output layer scores all N items.
  ``--scaling`` measures only these and keeps the models' rows of the existing report.

Times mean something only on a quiet machine: run it with nothing else on the cores (the
report records the load average before and after). ``python -m fatsmb_lib.studies.cost``
writes ``reports/<dataset>/cost.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import matplotlib.ticker as ticker
import numpy as np

from ..data.datasets import synthetic_variant
from ..support.checkpoints import write_text
from ..support.paths import project_root
from ..support.runtime import peak_rss_mib
from ..training.evaluate import format_metrics_table
from ..training.peers import BASELINES
from ..training.registry import train
from ..training.run import open_run
from ..training.stages import (
    MBAE_SPEC,
    finetune_decoder,
    prefix_latents,
    train_denoiser,
    train_mbae,
)

ONE_EPOCH = dict(stage1_epochs=1, stage2_epochs=1, stage3_epochs=1, baseline_epochs=1,
                 min_epochs=1)
LENGTHS = (25, 50, 100, 200)
ITEM_COUNTS = (1_000, 2_000, 4_000, 8_000)
SCALING_USERS = 50                    # about 11,000 every-prefix rows: seconds an epoch


def scaling_dataset(n_items: int = 1_000) -> str:
    """The generated data the scaling is timed on: the ``map`` preset with SCALING_USERS users
    of 200-250 interactions each (every row can fill L = 200) and ``n_items`` items."""
    return synthetic_variant("map", n_users=SCALING_USERS, n_items=n_items, min_len=200,
                             max_len=250, n_interactions=SCALING_USERS * 225)


def _epoch(ctx, model, history, rows: int) -> dict:
    """The one epoch's training seconds and rows: ``fit``'s epoch time minus one validation
    pass, timed again here on the trained model (the same work ``fit`` did after the epoch)."""
    start = time.perf_counter()
    ctx.evaluate(model, "valid")
    validation = time.perf_counter() - start
    return {"seconds": round(max(history.seconds[0] - validation, 0.0), 2), "rows": rows}


def _rows(batches) -> int:
    """Training rows in one epoch's batches (a DataLoader's dataset)."""
    return len(batches(1).dataset)


def measure_model(name: str, dataset: str, profile: str, device: str, run_dir: str,
                  **overrides) -> dict:
    """Train ``name`` (a baseline, "FatsMB" for its three stages or "MBAE" for stage 1 alone)
    for one epoch; its epochs' seconds and rows, and this process's peak memory. Meant to run
    in a process of its own (:func:`measure_in_subprocess`)."""
    ctx = open_run(dataset, profile, device, run_dir, **{**ONE_EPOCH, **overrides})
    ctx.model_lines = False
    if name in ("FatsMB", "MBAE"):
        mbae, stage1 = train_mbae(ctx)
        stages = {"stage 1": _epoch(ctx, mbae, stage1, _rows(MBAE_SPEC.batches(ctx)))}
        if name == "MBAE":
            return {"stages": stages, "peak_mib": round(peak_rss_mib(), 1)}
        latents = prefix_latents(mbae, ctx)
        model, stage2 = train_denoiser(mbae, ctx, latents=latents)
        stages["stage 2"] = _epoch(ctx, model, stage2, len(latents["target"]))
        stage3 = finetune_decoder(model, ctx, latents=latents)
        stages["stage 3"] = _epoch(ctx, model, stage3, len(latents["target"]))
    else:
        spec = BASELINES[name]
        model, history = train(spec, ctx)
        stages = {"epoch": _epoch(ctx, model, history, _rows(spec.batches(spec.adjust(ctx))))}
    return {"stages": stages, "peak_mib": round(peak_rss_mib(), 1)}


def measure_in_subprocess(name: str, dataset: str, profile: str, device: str,
                          **overrides) -> dict:
    """:func:`measure_model` in a fresh Python process (its own peak memory, its own
    threads), in a scratch run folder."""
    with tempfile.TemporaryDirectory() as run_dir:
        code = ("import json, sys; from fatsmb_lib.studies.cost import measure_model; "
                "print(json.dumps(measure_model(*sys.argv[1:6], **json.loads(sys.argv[6]))))")
        done = subprocess.run([sys.executable, "-c", code, name, dataset, profile, device,
                               run_dir, json.dumps(overrides)],
                              capture_output=True, text=True, check=False,
                              env={**os.environ, "FATSMB_STRICT": "0"})
    if done.returncode != 0:
        raise RuntimeError(f"measuring {name} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_cost(dataset: str = "ml100k", profile: str = "full", device: str = "cpu",
             models=None, out_dir: Path | None = None, log=print, **overrides) -> dict:
    """Every model (default: FatsMB and every registered baseline) for one epoch each; the
    report ``<out_dir>/cost.{json,md}`` (default ``reports/<dataset>/``), keeping the scaling
    rows of an existing report."""
    models = models or ("FatsMB", *BASELINES)
    out = out_dir or project_root() / "reports" / dataset
    load = {"before": os.getloadavg()}
    rows = {}
    for name in models:
        rows[name] = measure_in_subprocess(name, dataset, profile, device, **overrides)
        log(f"{name}: {rows[name]}")
    load["after"] = os.getloadavg()
    earlier = _existing(out)
    report = {"dataset": dataset, "profile": profile, "device": device, "load_average": load,
              "threads": os.environ.get("OMP_NUM_THREADS", "all"), "models": rows,
              "measured_at": time.strftime("%Y-%m-%d %H:%M"),
              **{k: v for k, v in earlier.items() if k == "scaling"}}
    write_report(out, report)
    return report


def run_scaling(dataset: str = "ml100k", profile: str = "full", device: str = "cpu",
                out_dir: Path | None = None, log=print, lengths=LENGTHS,
                item_counts=ITEM_COUNTS, **overrides) -> dict:
    """The MBAE's stage-1 epoch against L (``lengths``) and against N (``item_counts``, at the
    profile's L) on :func:`scaling_dataset`, one process each, added to ``dataset``'s existing
    report as ``"scaling"`` (its own load average and time)."""
    out = out_dir or project_root() / "reports" / dataset
    load = {"before": os.getloadavg()}
    against_length, against_items = {}, {}
    for length in lengths:
        found = measure_in_subprocess("MBAE", scaling_dataset(), profile, device,
                                      max_len=length, **overrides)
        against_length[str(length)] = found["stages"]["stage 1"]
        log(f"L = {length}: {against_length[str(length)]}")
    for n_items in item_counts:
        found = measure_in_subprocess("MBAE", scaling_dataset(n_items), profile, device,
                                      **overrides)
        against_items[str(n_items)] = found["stages"]["stage 1"]
        log(f"N = {n_items}: {against_items[str(n_items)]}")
    load["after"] = os.getloadavg()
    report = {**_existing(out), "scaling": {
        "dataset": scaling_dataset(), "profile": profile, "device": device, "load_average": load,
        "threads": os.environ.get("OMP_NUM_THREADS", "all"),
        "measured_at": time.strftime("%Y-%m-%d %H:%M"),
        "against_length": against_length, "against_items": against_items}}
    write_report(out, report)
    return report


def _existing(out: Path) -> dict:
    path = out / "cost.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def write_report(out: Path, report: dict) -> None:
    """``cost.json`` and ``cost.md``: the models' epochs, and the scaling where measured."""
    write_text(out / "cost.json", json.dumps(report, indent=2) + "\n")
    text = []
    if report.get("models"):
        load = report["load_average"]
        table = {f"{name} {stage}": {"seconds": f"{s['seconds']:.1f}", "rows": f"{s['rows']:,}",
                                     "s per 1,000 rows": f"{1000 * s['seconds'] / s['rows']:.2f}",
                                     "peak MiB": f"{row['peak_mib']:.0f}"}
                 for name, row in report["models"].items() for stage, s in row["stages"].items()}
        text += [f"# Training cost on {report['dataset']} (profile `{report['profile']}`, "
                 f"{report['device']}, one epoch per model, one model per process; load average "
                 f"before/after {load['before'][0]:.2f}/{load['after'][0]:.2f})", "",
                 format_metrics_table(table, ("seconds", "rows", "s per 1,000 rows", "peak MiB")),
                 ""]
    scaling = report.get("scaling")
    if scaling:
        load = scaling["load_average"]
        text += [f"## The MBAE's stage-1 epoch against L and N (`{scaling['dataset']}`, profile "
                 f"`{scaling['profile']}`, {scaling['device']}; load average before/after "
                 f"{load['before'][0]:.2f}/{load['after'][0]:.2f})", ""]
        for key, label in (("against_length", "L"), ("against_items", "N")):
            per_row = {f"{label} = {int(v):,}": {
                "seconds": f"{s['seconds']:.1f}", "rows": f"{s['rows']:,}",
                "ms per row": f"{1000 * s['seconds'] / s['rows']:.3f}"}
                for v, s in scaling[key].items()}
            text += [format_metrics_table(per_row, ("seconds", "rows", "ms per row"),
                                          label=label), ""]
    write_text(out / "cost.md", "\n".join(text))


def epoch_seconds(report: dict) -> dict[str, float]:
    """{model: seconds of one training epoch} of the report's models (FatsMB: its three
    stages' epochs summed)."""
    return {name: sum(stage["seconds"] for stage in row["stages"].values())
            for name, row in report.get("models", {}).items()}


def figure(report: dict) -> plt.Figure:
    """Figures 9-10 and the scaling: seconds per training epoch and peak memory per model
    (FatsMB in red), then the MBAE's time per row against L and against N on log-log axes,
    with the slopes 1 and 2 drawn through the first point for reference."""
    scaling = report.get("scaling", {})
    curves = [(key, label) for key, label in (("against_length", "sequence length L"),
                                              ("against_items", "number of items N"))
              if scaling.get(key)]
    panels = (2 if report.get("models") else 0) + len(curves)
    fig, axes = plt.subplots(1, max(panels, 1), figsize=(4.2 * max(panels, 1), 3.6),
                             squeeze=False)
    axes = list(axes[0])
    if report.get("models"):
        seconds = epoch_seconds(report)
        names = sorted(seconds, key=seconds.get)
        colors = ["tab:red" if n == "FatsMB" else "tab:blue" for n in names]
        left, right = axes.pop(0), axes.pop(0)
        left.barh(names, [seconds[n] for n in names], color=colors)
        left.set_xscale("log")
        left.xaxis.set_major_formatter(ticker.ScalarFormatter())
        left.xaxis.set_minor_formatter(ticker.NullFormatter())
        left.set_xlabel("seconds per training epoch (log)")
        left.set_title("time (FatsMB: stages 1-3)")
        right.barh(names, [report["models"][n]["peak_mib"] for n in names], color=colors)
        right.set_xlabel("peak memory of the process (MiB)")
        right.set_title("memory")
    for ax, (key, label) in zip(axes, curves):
        rows = scaling[key]
        xs = np.array([int(v) for v in rows], dtype=float)
        ys = np.array([1000 * r["seconds"] / r["rows"] for r in rows.values()])
        ax.loglog(xs, ys, marker="o", label="measured")
        for slope, style in ((1, ":"), (2, "--")):
            ax.loglog(xs, ys[0] * (xs / xs[0]) ** slope, ls=style, color="grey",
                      label=f"slope {slope}")
        ax.set_xticks(xs, [f"{int(x):,}" for x in xs])
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel("ms per training row")
        ax.set_title(f"the MBAE against {label.split()[-1]}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml100k")
    parser.add_argument("--profile", default="full")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="+", default=None)
    parser.add_argument("--scaling", action="store_true",
                        help="only the MBAE against L and N (keeps the models' rows)")
    args = parser.parse_args(argv)
    if args.scaling:
        run_scaling(args.dataset, args.profile, args.device)
    else:
        run_cost(args.dataset, args.profile, args.device, args.models)


if __name__ == "__main__":
    main()
