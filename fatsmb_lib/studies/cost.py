"""What training costs (Figures 9-10, Section 4.4.3): time and memory per model, one at a time.

The paper states FatsMB's complexity, O(L²d + Ld²) per sequence for the MBAE's attention and
O(Ld²) for MCGLN (Section 4.4.3), and shows its training time and memory next to the
baselines' (Appendix E, Figures 9-10), claiming them comparable. This study measures both here:

- **per model**: each model trains ONE epoch of its own batches in a fresh process (so the
  peak resident memory is its own), on the same data under the same profile; the report gives
  the epoch's seconds (validation excluded), the training rows it saw, seconds per 1,000 rows
  and the process's peak memory. FatsMB's three stages run in one process, each timed.
- **against the sequence length L** (``--scaling``): the MBAE's epoch on generated data with
  ``max_len`` L ∈ {25, 50, 100, 200}, timed per row: the attention's L² term shows as growth
  faster than linear once it dominates.

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
SCALING_DATASET = "synthetic-map+min_len=200+max_len=400+n_interactions=300000"


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
    """Train ``name`` (a baseline, or "FatsMB" for its three stages) for one epoch; its
    epochs' seconds and rows, and this process's peak memory. Meant to run in a process of
    its own (:func:`measure_in_subprocess`)."""
    ctx = open_run(dataset, profile, device, run_dir, **{**ONE_EPOCH, **overrides})
    ctx.model_lines = False
    if name == "FatsMB":
        mbae, stage1 = train_mbae(ctx)
        stages = {"stage 1": _epoch(ctx, mbae, stage1, _rows(MBAE_SPEC.batches(ctx)))}
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
             models=None, scaling: bool = False, out_dir: Path | None = None,
             log=print, **overrides) -> dict:
    """Every model (default: FatsMB and every registered baseline), then optionally the MBAE
    against L; the report ``<out_dir>/cost.{json,md}`` (default ``reports/<dataset>/``)."""
    models = models or ("FatsMB", *BASELINES)
    load = {"before": os.getloadavg()}
    rows = {}
    for name in models:
        rows[name] = measure_in_subprocess(name, dataset, profile, device, **overrides)
        log(f"{name}: {rows[name]}")
    lengths = {}
    if scaling:
        for length in LENGTHS:
            found = measure_in_subprocess("FatsMB", SCALING_DATASET, profile, device,
                                          max_len=length, **overrides)
            lengths[length] = found["stages"]["stage 1"]
            log(f"L = {length}: {lengths[length]}")
    load["after"] = os.getloadavg()
    report = {"dataset": dataset, "profile": profile, "device": device, "load_average": load,
              "threads": os.environ.get("OMP_NUM_THREADS", "all"), "models": rows,
              "mbae_against_length": lengths, "measured_at": time.strftime("%Y-%m-%d %H:%M")}
    out = out_dir or project_root() / "reports" / dataset
    write_text(out / "cost.json", json.dumps(report, indent=2) + "\n")
    table = {f"{name} {stage}": {"seconds": f"{s['seconds']:.1f}", "rows": f"{s['rows']:,}",
                                 "s per 1,000 rows": f"{1000 * s['seconds'] / s['rows']:.2f}",
                                 "peak MiB": f"{row['peak_mib']:.0f}"}
             for name, row in rows.items() for stage, s in row["stages"].items()}
    text = [f"# Training cost on {dataset} (profile `{profile}`, {device}, one epoch per model, "
            f"one model per process; load average before/after {load['before'][0]:.2f}/"
            f"{load['after'][0]:.2f})", "",
            format_metrics_table(table, ("seconds", "rows", "s per 1,000 rows", "peak MiB")), ""]
    if lengths:
        per_row = {f"L = {length}": {"s per 1,000 rows": f"{1000 * s['seconds'] / s['rows']:.2f}"}
                   for length, s in lengths.items()}
        text += ["## The MBAE's epoch against the sequence length", "",
                 format_metrics_table(per_row, ("s per 1,000 rows",), label="L"), ""]
    write_text(out / "cost.md", "\n".join(text))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml100k")
    parser.add_argument("--profile", default="full")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="+", default=None)
    parser.add_argument("--scaling", action="store_true", help="also the MBAE against L")
    args = parser.parse_args(argv)
    run_cost(args.dataset, args.profile, args.device, args.models, args.scaling)


if __name__ == "__main__":
    main()
