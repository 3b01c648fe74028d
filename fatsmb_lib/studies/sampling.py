"""Stage 3 and the sampler, on several seeds: ``python -m fatsmb_lib.studies.sampling``.

Two questions of issue 21, measured on the same trained models (stage 1 and 2 from the
comparison's checkpoint folder ``runs/compare-<dataset>-<profile>/``, so nothing is trained
twice):

- **Can stage 3 make the model worse?** Its early stopping picks among its own epochs, so the
  decoder stage 2 left can be replaced by a worse one. We fine-tune stage 3 with and without
  ``stage3_keeps_stage2`` (stage 2's decoder is epoch 0) and report validation and test
  NDCG@10 beside stage 2's.
- **Does averaging samples pay?** FatsMB draws one latent per user and behavior. We score the
  plain stage-3 model with K ∈ {1, 4, 16} samples, averaging their decoded scores or their
  latents, at the profile's ω, with the cost per user of each (wall time of the test pass over
  all users, this machine).

Selection is on validation; the test column is reported, never used to choose. Results go to
``reports/<dataset>/sampling_study.{json,md}``, rewritten after every seed.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..support.checkpoints import write_text
from ..support.paths import project_root
from ..training.evaluate import format_metrics_table, mean_std
from ..training.run import open_run
from ..training.stages import finetune_decoder, prefix_latents, train_denoiser, train_mbae
from .verdicts import format_mean_std

SAMPLES = (1, 4, 16)
AVERAGES = ("scores", "latents")
METRIC = "NDCG@10"


def run_seed(ctx, samples=SAMPLES, averages=AVERAGES) -> dict[str, dict]:
    """{row name: {"valid": NDCG@10, "test": NDCG@10, "ms_per_user": test pass per user}}."""
    rows: dict[str, dict] = {}

    def record(name: str, model) -> None:
        valid = ctx.evaluate(model, "valid")[METRIC]
        start = time.perf_counter()
        test = ctx.evaluate(model, "test")
        seconds = time.perf_counter() - start
        rows[name] = {"valid": valid, "test": test[METRIC],
                      "ms_per_user": 1e3 * seconds / test["n"]}

    mbae, _ = train_mbae(ctx)
    latents = prefix_latents(mbae, ctx)
    for keeps in (True, False):  # the plain stage 3 last: K is measured on it
        run = ctx.replace(stage3_keeps_stage2=keeps)
        model, _ = train_denoiser(mbae, run, latents=latents)
        if keeps:
            record("stage 2", model)
        history = finetune_decoder(model, run, latents=latents)
        name = "stage 3, keeps stage 2" if keeps else "stage 3"
        record(name, model)
        rows[name]["best_epoch"] = history.best_epoch
    for average in averages:
        for k in (k for k in samples if k > 1):  # K = 1 is the plain stage 3 row
            with model.sampler(n_samples=k, sample_average=average):
                record(f"K = {k}, mean of {average}", model)
    return rows


def run_study(dataset: str, seeds: list[int], profile: str = "default", device: str = "auto",
              data_dir: str | Path | None = None, log=print, run_dir: Path | None = None,
              out_dir: Path | None = None, **overrides) -> dict:
    """Every seed's rows, then mean ± std over seeds, written after each seed."""
    root = project_root()
    run_dir = run_dir or root / "runs" / f"compare-{dataset}-{profile}"
    out = out_dir or root / "reports" / dataset
    per_seed, start = [], time.perf_counter()
    for seed in seeds:
        ctx = open_run(dataset, profile, device, run_dir, data_dir, seed, **overrides)
        per_seed.append(run_seed(ctx))
        log(f"seed {seed}: " + ", ".join(f"{name} {r['valid']:.4f}/{r['test']:.4f}"
                                         for name, r in per_seed[-1].items()))
        report = {"dataset": dataset, "profile": profile, "seeds": seeds[:len(per_seed)],
                  "minutes": round((time.perf_counter() - start) / 60, 1),
                  "per_seed": per_seed, "mean_std": mean_std(per_seed)}
        write_text(out / "sampling_study.json", json.dumps(report, indent=2) + "\n")
        table = {name: {"valid NDCG@10": format_mean_std(m["valid"]),
                        "test NDCG@10": format_mean_std(m["test"]),
                        "ms per user (test pass)": f"{m['ms_per_user'][0]:.2f}"}
                 for name, m in report["mean_std"].items()}
        text = (f"# {dataset}: stage 3 and the sampler (profile `{profile}`, seeds "
                f"{report['seeds']})\n\nThe profile's ω; K samples per user and behavior. "
                "Chosen on validation; test reported.\n\n"
                + format_metrics_table(table, keys=("valid NDCG@10", "test NDCG@10",
                                                    "ms per user (test pass)")) + "\n")
        write_text(out / "sampling_study.md", text)
    log(text)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml100k")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", default=None, help="default: the checkout's data/")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="checkpoint folder (default runs/compare-<dataset>-<profile>; "
                             "runs/<dataset>-<profile> reuses the notebooks' seed-0 models)")
    args = parser.parse_args(argv)
    run_study(args.dataset, args.seeds, args.profile, args.device, args.data_dir,
              run_dir=args.run_dir)


if __name__ == "__main__":
    main()
