"""Benchmark: ``python -m fatsmb_lib.bench [--dataset synthetic-yelp-like] [--device auto]``.

Times the training throughput of each stage (sequences/s over ``--batches`` mini-batches, and
the epoch time that implies), full-ranking inference of all users with the default DDIM steps
and guidance (users/s), and peak memory; writes ``reports/bench/<dataset>-<device>.json``.
Weights are untrained: speed does not depend on them.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from itertools import islice
from pathlib import Path

import torch

from .batches import PrefixView
from .config import project_root
from .encoder import MBAE
from .run import open_run
from .runtime import make_generator
from .stages import build_fatsmb, cloze_batches, prefix_latents, tensor_batches
from .train import train_one_epoch


def _peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_training(model, batches, loss_fn, params, device) -> tuple[float, int]:
    """Seconds and rows for one pass of ``train_one_epoch`` over the given batches."""
    batches = list(batches)
    rows = sum(len(next(iter(b.values()))) for b in batches)
    optimizer = torch.optim.AdamW(params, lr=2e-3)
    _sync(device)
    start = time.perf_counter()
    train_one_epoch(model, batches, loss_fn, optimizer, list(params), grad_clip=1.0, epoch=1,
                    progress=False)
    _sync(device)
    return time.perf_counter() - start, rows


def run_bench(dataset: str = "synthetic-yelp-like", device: str = "auto", n_batches: int = 50,
              data_dir: str = "data", out_dir: Path | None = None, log=print) -> dict:
    """Time every stage and inference; write ``<out_dir>/<dataset>-<device type>.json``
    (default out_dir: ``<repo>/reports/bench``)."""
    ctx = open_run(dataset, "default", device, project_root() / "runs" / "bench",
                   project_root() / data_dir)
    dev, profile, data = ctx.device, ctx.profile, ctx.data
    mbae = MBAE(profile.encoder_config(data.n_items, data.n_behaviors)).to(dev)
    result = {"dataset": dataset, "device": str(dev), "n_batches": n_batches,
              "batch_size": profile.batch_size, "users": data.n_users, "items": data.n_items,
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "cpu": platform.processor() or platform.machine(),
              "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None}

    # stage 1: Cloze batches through the MBAE
    loader = cloze_batches(ctx, profile.sigma)(1)
    cloze = [{k: v.to(dev) for k, v in b.items()} for b in islice(loader, n_batches)]
    seconds, rows = _time_training(mbae, cloze, mbae.loss, list(mbae.parameters()), dev)
    windows = len(loader.dataset)
    result["stage1"] = {"sequences_per_s": rows / seconds, "epoch_s": windows * seconds / rows}

    # latents of the training prefixes (encoder forward of both variants, once per stage-2/3 run)
    view_rows = len(PrefixView(data, profile.max_len, "train", profile.prefixes_per_user))
    _sync(dev)
    start = time.perf_counter()
    latents = prefix_latents(mbae, ctx, n_batches)
    _sync(dev)
    seconds, rows = time.perf_counter() - start, len(latents["target"])
    result["prefix_latents"] = {"prefixes": view_rows, "prefixes_per_s": rows / seconds,
                                "all_prefixes_s": view_rows * seconds / rows}

    # stage 2: denoiser on latent pairs
    model = build_fatsmb(mbae, ctx)
    pairs = list(islice(tensor_batches(latents, profile.batch_size, make_generator(0)), n_batches))
    seconds, rows = _time_training(model, pairs, model.diffusion_loss,
                                   list(model.denoiser.parameters()), dev)
    result["stage2"] = {"sequences_per_s": rows / seconds, "epoch_s": view_rows * seconds / rows}

    # stage 3: decoder through the full sampler
    seconds, rows = _time_training(model, pairs, model.loss,
                                   list(model.mbae.decoder.parameters()), dev)
    result["stage3"] = {"sequences_per_s": rows / seconds, "epoch_s": view_rows * seconds / rows}

    # inference: all users, full ranking, default DDIM steps (T/Δt) and guidance ω
    _sync(dev)
    start = time.perf_counter()
    ctx.evaluate(model, "test")
    _sync(dev)
    seconds = time.perf_counter() - start
    result["inference"] = {"users_per_s": data.n_users / seconds, "seconds": seconds,
                           "ddim_steps": len(model.diffusion.timesteps(profile.stride)),
                           "omega": profile.omega}
    result["peak_memory_mib"] = _peak_memory_mib(dev)

    out = Path(out_dir or project_root() / "reports" / "bench") / f"{dataset}-{dev.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    log(json.dumps(result, indent=2))
    log(f"written to {out}")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="synthetic-yelp-like")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batches", type=int, default=50, help="mini-batches timed per stage")
    parser.add_argument("--data-dir", default="data")
    args = parser.parse_args(argv)
    run_bench(args.dataset, args.device, args.batches, args.data_dir)


if __name__ == "__main__":
    main()
