"""Benchmark against the machine: ``python -m fatsmb_lib.studies.bench [--dataset ml100k] [--device auto]``.

One run measures, on the same threads:

1. the machine's matrix-multiply rate (GFLOP/s) in fp32 and bf16: square products at this
   model's scale (256) and at a large one (2048); the better of the two is the reference;
2. per training stage, in fp32 and in bf16 side by side: rows/s over ``--batches`` steps,
   FLOPs per row (counted by ``torch.utils.flop_counter``: matrix products; CPU attention
   kernels are not counted, so the ratios are lower bounds), achieved GFLOP/s, its fraction
   of the matmul rate of that precision, and bf16's speed-up over fp32;
3. full-ranking inference of every user (guided DDIM, the profile's steps and ω) in users/s,
   in fp32 (what ``evaluate`` uses) and under bf16 autocast;
4. the peak resident memory of the process.

It writes ``reports/bench/<dataset>-<device type>.json`` and a Markdown table beside it.
Weights are untrained: speed does not depend on them.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from itertools import islice
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..data.batches import PrefixView
from ..models.encoder import MBAE, EncoderConfig
from ..support.checkpoints import write_text
from ..support.paths import project_root
from ..support.precision import PRECISIONS, autocast
from ..support.runtime import make_generator, peak_rss_mib
from ..training.context import EVAL_BATCH
from ..training.epochs import cloze_batches, tensor_batches
from ..training.evaluate import evaluate
from ..training.run import open_run
from ..training.stages import build_fatsmb, prefix_latents
from ..training.train import train_one_epoch

# square products (size, repeats): the model's scale (its widest layer is 4·d = 256 wide,
# batches hold 256 rows) and a large one; the better rate is the reference the stages are
# measured against. A GPU reaches its rate only on much larger products.
SQUARE_SIZES = {"cpu": ((256, 200), (2048, 5)), "cuda": ((256, 200), (2048, 50), (8192, 20))}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device, precision: str, m: int, k: int, n: int,
                  repeats: int = 20) -> float:
    """GFLOP/s of ``torch.mm`` (m × k @ k × n) in ``precision`` on ``device``."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    for _ in range(3):
        torch.mm(a, b)
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    _sync(device)
    return 2 * m * k * n * repeats / (time.perf_counter() - start) / 1e9


def _rows(batch: dict) -> int:
    return len(next(iter(batch.values())))


def _flops_per_row(model, batch: dict, loss_fn, precision: str, device) -> float:
    """Forward + backward FLOPs of one step, per row (matrix products only)."""
    counter = FlopCounterMode(display=False)
    with counter:
        with autocast(device, precision):
            loss = loss_fn(batch)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / _rows(batch)


def time_stage(model, batches: list[dict], loss_fn, params, device, precision: str) -> dict:
    """rows/s of ``train_one_epoch`` over ``batches`` (after one warm-up step) and FLOPs/row."""
    params = list(params)
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    train_one_epoch(model, batches[:1], loss_fn, optimizer, params, grad_clip=1.0, epoch=0,
                    progress=False, precision=precision)          # warm-up (allocations, caches)
    _sync(device)
    start = time.perf_counter()
    train_one_epoch(model, batches, loss_fn, optimizer, params, grad_clip=1.0, epoch=1,
                    progress=False, precision=precision)
    _sync(device)
    rows_per_s = sum(_rows(b) for b in batches) / (time.perf_counter() - start)
    flops = _flops_per_row(model, batches[0], loss_fn, precision, device)
    return {"rows_per_s": rows_per_s, "mflop_per_row": flops / 1e6,
            "gflops": flops * rows_per_s / 1e9}


def _inference(model, ctx, precision: str) -> float:
    _sync(ctx.device)
    start = time.perf_counter()
    with autocast(ctx.device, precision):
        evaluate(model, ctx.loader("test"), device=ctx.device,
                 generator=make_generator(0, ctx.device))
    _sync(ctx.device)
    return ctx.data.n_users / (time.perf_counter() - start)


def run_bench(dataset: str = "ml100k", device: str = "auto", n_batches: int = 30,
              data_dir: str | Path | None = None, out_dir: Path | None = None, log=print,
              **overrides) -> dict:
    """Measure everything above under the ``default`` profile (``overrides`` change its fields,
    e.g. ``stage2_batch_size``); write ``<out_dir>/<dataset>-<device type>.{json,md}``
    (default out_dir: ``<repo>/reports/bench``)."""
    ctx = open_run(dataset, "default", device, project_root() / "runs" / "bench",
                   data_dir, **overrides)
    dev, profile, data = ctx.device, ctx.profile, ctx.data
    torch.manual_seed(0)
    mbae = MBAE(profile.config(EncoderConfig, n_items=data.n_items, n_behaviors=data.n_behaviors)).to(dev)
    result = {
        "dataset": dataset, "device": str(dev), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "users": data.n_users, "items": data.n_items, "batch_size": profile.batch_size,
        "stage2_batch_size": profile.stage2_batch_size,
        "n_batches": n_batches, "default_precision": profile.precision,
        "matmul_gflops_by_size": {n: {p: matmul_gflops(dev, p, n, n, n, repeats)
                                      for p in PRECISIONS}
                                  for n, repeats in SQUARE_SIZES.get(dev.type, SQUARE_SIZES["cpu"])},
    }
    result["matmul_gflops"] = {p: max(r[p] for r in result["matmul_gflops_by_size"].values())
                               for p in PRECISIONS}  # the machine's rate: the best of the sizes
    loader = cloze_batches(ctx, profile.sigma)(1)
    cloze = [{k: v.to(dev) for k, v in b.items()} for b in islice(loader, n_batches)]
    # enough prefix latents for n_batches of the larger of the two latent-stage batch sizes
    latent_passes = n_batches * -(-max(profile.stage2_batch_size, profile.batch_size) // EVAL_BATCH)
    _sync(dev)
    start = time.perf_counter()
    latents = prefix_latents(mbae, ctx, latent_passes)   # encoder forward of both variants
    _sync(dev)
    result["prefix_latents"] = {
        "rows_per_s": len(latents["target"]) / (time.perf_counter() - start),
        "rows": len(PrefixView(data, profile.max_len, "train", profile.prefixes_per_user))}
    model = build_fatsmb(mbae, ctx)
    model.space.fit_(latents["z_b"], latents["z_null"])

    def latent_batches(batch_size: int) -> list[dict]:
        return list(islice(tensor_batches(latents, batch_size, make_generator(0)), n_batches))

    stage_inputs = {  # model whose train mode fit would set, batches, loss, trained parameters
        "stage1": (mbae, cloze, mbae.loss, mbae.parameters),
        "stage2": (model, latent_batches(profile.stage2_batch_size),
                   model.diffusion_loss, model.denoiser.parameters),
        "stage3": (model, latent_batches(profile.batch_size), model.loss,
                   model.mbae.decoder.parameters),
    }
    result["stages"] = {}
    for stage, (module, batches, loss_fn, params) in stage_inputs.items():
        runs = {p: time_stage(module, batches, loss_fn, params(), dev, p) for p in PRECISIONS}
        default = runs[profile.precision]
        result["stages"][stage] = {
            "rows_per_s": default["rows_per_s"], "gflops": default["gflops"],
            "mflop_per_row": default["mflop_per_row"],
            "fraction_of_matmul": default["gflops"] / result["matmul_gflops"][profile.precision],
            "speedup_vs_fp32_eager": default["rows_per_s"] / runs["fp32"]["rows_per_s"],
            "by_precision": {p: {**r, "fraction_of_matmul": r["gflops"] / result["matmul_gflops"][p]}
                             for p, r in runs.items()},
        }
        log(f"{stage}: " + ", ".join(f"{p} {r['rows_per_s']:.0f} rows/s" for p, r in runs.items()))
    users = {p: _inference(model, ctx, p) for p in PRECISIONS}
    result["inference"] = {"users_per_s": users["fp32"], "bf16_users_per_s": users["bf16"],
                           "speedup_vs_fp32_eager": 1.0,
                           "ddim_steps": len(model.diffusion.timesteps()),
                           "omega": profile.omega}
    result["peak_rss_mib"] = peak_rss_mib()
    if dev.type == "cuda":
        result["peak_gpu_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20

    out = Path(out_dir or project_root() / "reports" / "bench") / f"{dataset}-{dev.type}"
    write_text(out.with_suffix(".json"), json.dumps(result, indent=2))
    write_text(out.with_suffix(".md"), markdown(result))
    log(markdown(result))
    return result


def _percent(fraction: float) -> str:
    """A share as a percentage, with as many decimals as it takes to be nonzero (GPUs: 0.05%)."""
    digits = 0
    while digits < 3 and 0 < fraction and round(100 * fraction, digits) == 0:
        digits += 1
    return f"{100 * fraction:.{digits}f}%"


def markdown(result: dict) -> str:
    """The table of a bench result (what the README and the closing notes quote)."""
    mm = result["matmul_gflops"]
    lines = [f"# bench: {result['dataset']} on {result['device']} ({result['threads']} threads, "
             f"torch {result['torch']})", "",
             f"matmul rate (best of square sizes {', '.join(map(str, result['matmul_gflops_by_size']))}): "
             f"fp32 {mm['fp32']:.0f} GFLOP/s, bf16 {mm['bf16']:.0f} GFLOP/s; default precision "
             f"`{result['default_precision']}`.", "",
             "| stage | precision | rows/s | MFLOP/row | GFLOP/s | % of matmul rate |",
             "|---|---|---|---|---|---|"]
    for stage, r in result["stages"].items():
        for precision, p in r["by_precision"].items():
            lines.append(f"| {stage} | {precision} | {p['rows_per_s']:.0f} | "
                         f"{p['mflop_per_row']:.1f} | {p['gflops']:.1f} | "
                         f"{_percent(p['fraction_of_matmul'])} |")
    inf = result["inference"]
    lines += ["", f"prefix latents: {result['prefix_latents']['rows_per_s']:.0f} rows/s; "
              f"inference ({inf['ddim_steps']} DDIM steps, ω = {inf['omega']}): "
              f"{inf['users_per_s']:.0f} users/s in fp32 (bf16 autocast: "
              f"{inf['bf16_users_per_s']:.0f}); peak RSS {result['peak_rss_mib']:.0f} MiB"
              + (f", peak GPU memory allocated {result['peak_gpu_mib']:.0f} MiB"
                 if "peak_gpu_mib" in result else "") + ".", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml100k")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batches", type=int, default=30, help="mini-batches timed per stage")
    parser.add_argument("--data-dir", default=None, help="default: the checkout's data/")
    parser.add_argument("--stage2-batch-size", type=int, default=None,
                        help="rows per denoiser step (default: the profile's stage2_batch_size)")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="where the JSON and Markdown go (default: reports/bench)")
    args = parser.parse_args(argv)
    run_bench(args.dataset, args.device, args.batches, args.data_dir, args.out_dir,
              stage2_batch_size=args.stage2_batch_size)


if __name__ == "__main__":
    main()
