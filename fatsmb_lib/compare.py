"""Multi-seed comparison: ``python -m fatsmb_lib.compare --dataset ml100k --seeds 0 1 2``.

Trains, for every seed, the baselines (Pop, SASRec, BERT4Rec), the MBAE with each position
scheme (APE, RoPE, BaRoPE; Table 4's MBAE rows) and FatsMB with each denoiser and both
parameterisations (Table 4's FatsMB rows; ε and x0), then reports validation and test
Recall/NDCG@10/20 as mean ± std over seeds in ``reports/<dataset>/comparison.json`` and
``comparison.md``. Checkpoints go to ``runs/compare-<dataset>-<profile>/``, so an interrupted
comparison resumes where it stopped.
"""
from __future__ import annotations

import argparse
import json
import time

from .config import project_root
from .denoiser import ABLATION
from .encoder import POSITIONS
from .evaluate import format_metrics_table, mean_std
from .run import Context, open_run
from .stages import (finetune_decoder, fit_pop, prefix_latents, train_bert4rec, train_denoiser,
                     train_mbae, train_sasrec)


def run_seed(ctx: Context, log=print) -> dict[str, dict[str, dict]]:
    """{split: {model name: metrics}} for one seed."""
    results: dict[str, dict] = {"valid": {}, "test": {}}

    def record(name: str, model) -> None:
        for split in results:
            results[split][name] = ctx.evaluate(model, split)
        log(f"  seed {ctx.seed} {name:<22} valid NDCG@10 {results['valid'][name]['NDCG@10']:.4f}"
            f"  test NDCG@10 {results['test'][name]['NDCG@10']:.4f}")

    record("Pop", fit_pop(ctx))
    record("SASRec", train_sasrec(ctx)[0])
    record("BERT4Rec", train_bert4rec(ctx)[0])
    mbae = {position: train_mbae(ctx.replace(position=position))[0] for position in POSITIONS}
    for position in POSITIONS:
        record(f"MBAE {position}", mbae[position])
    base = mbae[ctx.profile.position]
    latents = prefix_latents(base, ctx)
    for kind, prediction in ABLATION:
        variant = ctx.replace(denoiser=kind, prediction=prediction)
        model, _ = train_denoiser(base, variant, latents=latents)
        record(f"FatsMB {kind} {prediction} (stage 2)", model)
        finetune_decoder(model, variant, latents=latents)
        record(f"FatsMB {kind} {prediction}", model)
    return results


def run_comparison(dataset: str, seeds: list[int], profile: str = "default", device: str = "auto",
                   data_dir: str = "data", log=print) -> dict:
    """Every model of :func:`run_seed` for each seed, aggregated as mean ± std; checkpoints in
    ``runs/compare-<dataset>-<profile>/`` (an interrupted comparison resumes)."""
    root = project_root()
    run_dir = root / "runs" / f"compare-{dataset}-{profile}"
    per_seed = []
    start = time.perf_counter()
    for seed in seeds:
        ctx = open_run(dataset, profile, device, run_dir, root / data_dir, seed)
        per_seed.append(run_seed(ctx, log))
    summary = {split: {name: mean_std([r[split][name] for r in per_seed]) for name in per_seed[0][split]}
               for split in ("valid", "test")}
    report = {"dataset": dataset, "profile": ctx.profile.to_dict(), "seeds": seeds,
              "minutes": round((time.perf_counter() - start) / 60, 1),
              "mean_std": summary, "per_seed": per_seed}
    out = root / "reports" / dataset
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.json").write_text(json.dumps(report, indent=2) + "\n")
    text = [f"# {dataset}: mean ± std over seeds {seeds} (profile `{profile}`, full ranking)", ""]
    for split in ("valid", "test"):
        text += [f"## {split}", "", format_metrics_table(summary[split]), ""]
    (out / "comparison.md").write_text("\n".join(text))
    log("\n".join(text))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml100k")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", default="data")
    args = parser.parse_args(argv)
    run_comparison(args.dataset, args.seeds, args.profile, args.device, args.data_dir)


if __name__ == "__main__":
    main()
