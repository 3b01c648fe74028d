"""Figure 8a-e and Table 4 over seeds: ``python -m fatsmb_lib.studies.sweeps``.

The paper varies five hyperparameters one at a time on Yelp and Retail (Section 4.5): the item
mask probability ρ and the behavior mask probability σ on the MBAE (Fig. 8a-b), the number of
diffusion steps T, the DDIM jump Δt and the guidance strength ω on FatsMB (Fig. 8c-e), each
over the grid of :data:`SWEEPS`, one run per value. Here every value is trained or sampled on
three seeds, so a trend can be told from noise:

- ρ, σ: the MBAE is retrained with the value (stage 1 only);
- T: stages 2-3 are retrained on the seed's stage-1 MBAE with T steps (Δt kept);
- Δt, ω: sampler settings only (Eq. 5, Eq. 17): the seed's FatsMB, trained once, is sampled
  with each value (``FatsMB.sampler``), so nothing is retrained.

Table 4's two halves are the same kind of one-at-a-time change, of a component rather than a
number, and run here the same way on today's recipe: the MBAE's position scheme (APE, RoPE,
BaRoPE; stage 1 again) and the denoiser (MLP, AdaLN, MCGLN; stages 2-3 again, at the
profile's parameterisation). They are in the report's tables, not in the figure.

Every row records validation and test Recall/NDCG@10; a trend is judged on test NDCG@10 by the
one-std rule (``verdicts``; ``claims`` reads the ledger), since nothing is selected here. The
value the profile uses is one point of each grid and is trained once per seed for all five.

``python -m fatsmb_lib.studies.sweeps`` runs all five under ``default`` (``--only omega
stride`` for the cheap ones); checkpoints go to the profile's scratch folder
``runs/<dataset>-<profile>/`` (shared with the notebooks' and the diversity study's runs of
the same settings), the ledger to ``reports/<dataset>/sweeps.json`` (resumable), the table
and figure to ``sweeps.{md,png}``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ..support.checkpoints import write_text
from ..support.paths import default_run_dir, project_root
from ..training.context import Context
from ..training.evaluate import format_metrics_table
from ..training.run import open_run
from ..training.stages import finetune_decoder, prefix_latents, train_denoiser, train_mbae
from .ledger import Ledger
from .verdicts import MIN_SEEDS, format_mean_std, summarize

# field: (the paper's grid, what is swept, the figure's label) — Section 4.5's grids
SWEEPS: dict[str, tuple[tuple, str, str]] = {
    "rho": ((0.2, 0.4, 0.6, 0.8), "MBAE", "item mask probability ρ (Fig. 8a)"),
    "sigma": ((0.1, 0.2, 0.4, 0.6, 0.8), "MBAE", "behavior mask probability σ (Fig. 8b)"),
    "T": ((50, 100, 200, 500, 1000), "FatsMB", "diffusion steps T (Fig. 8c)"),
    "stride": ((10, 20, 50, 100), "FatsMB", "DDIM jump Δt (Fig. 8d)"),
    "omega": ((0.0, 1.0, 2.0, 5.0), "FatsMB", "guidance strength ω (Fig. 8e)"),
    "position": (("ape", "rope", "barope"), "MBAE", "position encoding (Table 4)"),
    "denoiser": (("mlp", "adaln", "mcgln"), "FatsMB", "denoiser (Table 4)"),
}
FIGURE8 = ("rho", "sigma", "T", "stride", "omega")
SAMPLER = ("stride", "omega")           # swept without training
METRICS = ("Recall@10", "NDCG@10", "Recall@20", "NDCG@20")   # Table 4 reports @20
REPORT = "sweeps"


def cell(field: str, value) -> str:
    """The ledger's name of one point: ``"T=500"``, ``"position=rope"``."""
    return f"{field}={value}" if isinstance(value, str) else f"{field}={value:g}"


def _row(ctx: Context, model, seconds: float) -> dict:
    """Validation and test Recall and NDCG at 10 and 20 of ``model``, and ``seconds``: the
    training behind the point (0 for a sampler setting of an already trained FatsMB)."""
    found = {split: ctx.evaluate(model, split) for split in ("valid", "test")}
    row = {split: {k: metrics[k] for k in METRICS} for split, metrics in found.items()}
    return {**row, "seconds": round(seconds, 1)}


def run_seed(ctx: Context, fields, ledger: Ledger, log=print) -> None:
    """Every point of ``fields`` for ``ctx.seed`` not yet in ``ledger``, each recorded as it
    finishes, the cheap ones first (sampler settings, then T, then the MBAE's). The profile's
    own model (stage 1, then stages 2-3) is trained once and shared by all five."""
    seed, p = ctx.seed, ctx.profile
    cost = {**dict.fromkeys(SAMPLER, 0), "T": 1, "denoiser": 1}
    todo = sorted(((f, v) for f in fields for v in SWEEPS[f][0]
                   if not ledger.done(cell(f, v), seed)), key=lambda fv: cost.get(fv[0], 2))
    if not todo:
        return
    mbae, _ = train_mbae(ctx)
    latents = prefix_latents(mbae, ctx)
    fatsmb = None
    for field, value in todo:
        start = time.perf_counter()
        if field in SAMPLER:
            if fatsmb is None:
                fatsmb, _ = train_denoiser(mbae, ctx, latents=latents)
                finetune_decoder(fatsmb, ctx, latents=latents)
            with fatsmb.sampler(**{field: value}):
                row = _row(ctx, fatsmb, time.perf_counter() - start)
        elif SWEEPS[field][1] == "FatsMB":       # T, denoiser: stages 2-3 again, same MBAE
            run = ctx.replace(**{field: value})
            model, _ = train_denoiser(mbae, run, latents=latents)
            finetune_decoder(model, run, latents=latents)
            row = _row(ctx, model, time.perf_counter() - start)
        else:                                    # ρ, σ, position: stage 1 again
            model = mbae if getattr(p, field) == value else \
                train_mbae(ctx.replace(**{field: value}))[0]
            row = _row(ctx, model, time.perf_counter() - start)
        ledger.record(cell(field, value), seed, row)
        log(f"  seed {seed} {cell(field, value):<12} test NDCG@10 {row['test']['NDCG@10']:.4f}")


def curve(ledger: Ledger, field: str, split: str = "test", metric: str = "NDCG@10"
          ) -> dict[float, tuple[float, float]]:
    """{value: (mean, std)} of ``field``'s points with at least MIN_SEEDS seeds."""
    out = {}
    for value in SWEEPS[field][0]:
        runs = ledger.runs(cell(field, value))
        if len(runs) >= MIN_SEEDS:
            out[value] = summarize([r[split][metric] for r in runs.values()])
    return out


def figure(ledger: Ledger, fields=None) -> plt.Figure:
    """One panel per hyperparameter of ``fields`` (default: Figure 8's five): test NDCG@10
    against the value (on a value axis, log for T), mean ± one seed-std as a band, the
    profile's value marked."""
    fields = fields or tuple(f for f in FIGURE8 if f in SWEEPS)
    fig, axes = plt.subplots(1, len(fields), figsize=(3.3 * len(fields), 3.2), squeeze=False)
    for ax, field in zip(axes[0], fields):
        points = curve(ledger, field)
        xs = np.array(list(points), dtype=float)
        if len(xs):
            mean = np.array([m for m, _ in points.values()])
            std = np.array([s for _, s in points.values()])
            ax.plot(xs, mean, marker="o", color="tab:blue")
            ax.fill_between(xs, mean - std, mean + std, alpha=0.25, color="tab:blue")
        ax.axvline(ledger.meta["profile_values"][field], color="grey", ls=":", lw=1)
        if field == "T":
            ax.set_xscale("log")
        ax.set_xticks(SWEEPS[field][0])
        ax.set_xticklabels([f"{v:g}" for v in SWEEPS[field][0]])
        ax.set_xlabel(SWEEPS[field][2])
        ax.set_title(SWEEPS[field][1])
    axes[0][0].set_ylabel("test NDCG@10 (mean ± std)")
    fig.tight_layout()
    return fig


def write_report(out: Path, ledger: Ledger) -> None:
    """``sweeps.md`` (every point: its seeds, validation NDCG@10 and the test metrics its
    figure or table reports) and ``sweeps.png`` (Figure 8)."""
    meta = ledger.meta
    lines = [f"# Figure 8a-e and Table 4 over seeds on {meta['dataset']} (profile "
             f"`{meta['profile']}`)", "",
             "One setting changed at a time from the profile (its value marked *); mean ± std "
             f"over seeds once a point has {MIN_SEEDS}, the seeds' values before "
             "(`fatsmb_lib.studies.sweeps`).", ""]
    for field, (values, model, label) in SWEEPS.items():
        shown = [("valid", "NDCG@10")] + [("test", m) for m in (
            ("NDCG@10",) if field in FIGURE8 else ("Recall@20", "NDCG@20"))]
        rows = {}
        for value in values:
            runs = ledger.runs(cell(field, value))
            if not runs:
                continue
            name = cell(field, value).split("=")[1] + (
                " *" if meta["profile_values"][field] == value else "")
            rows[name] = {"seeds": str(len(runs))}
            for split, metric in shown:
                scores = [r[split][metric] for r in runs.values()]
                rows[name][f"{split} {metric}"] = (format_mean_std(summarize(scores))
                                                   if len(runs) >= MIN_SEEDS else
                                                   ", ".join(f"{x:.4f}" for x in scores))
        if rows:
            keys = ("seeds", *(f"{split} {metric}" for split, metric in shown))
            lines += [f"## {label}, {model}", "", format_metrics_table(rows, keys, label="value"), ""]
    write_text(out / f"{REPORT}.md", "\n".join(lines))
    if any(f in SWEEPS for f in FIGURE8):
        fig = figure(ledger)
        fig.savefig(out / f"{REPORT}.png", dpi=120)
        plt.close(fig)


def run_sweeps(dataset: str = "ml100k", seeds=(0, 1, 2), profile: str = "default",
               fields=None, device: str = "auto", run_dir: Path | None = None,
               out_dir: Path | None = None, data_dir: str | Path | None = None, log=print,
               **overrides) -> Ledger:
    """Every point of ``fields`` on every seed (points in the ledger are kept), the report
    rewritten after each seed. ``overrides`` change profile fields (for tests)."""
    fields = fields or tuple(SWEEPS)
    unknown = sorted(set(fields) - set(SWEEPS))
    if unknown:
        raise ValueError(f"no sweep named {unknown}: choose from {sorted(SWEEPS)}")
    out = out_dir or project_root() / "reports" / dataset
    run_dir = run_dir or default_run_dir(dataset, profile)
    ledger = None
    for seed in seeds:
        ctx = open_run(dataset, profile, device, run_dir, data_dir, seed, **overrides)
        if ledger is None:
            ledger = Ledger(out / f"{REPORT}.json", dataset=dataset, profile=profile,
                            overrides=overrides)
            # the profile's value of each swept field (derived from the profile: not a clash)
            ledger.meta.setdefault("profile_values", {}).update(
                {f: getattr(ctx.profile, f) for f in SWEEPS})
        run_seed(ctx, fields, ledger, log)
        write_report(out, ledger)
    return ledger


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml100k")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--only", nargs="+", default=None, choices=list(SWEEPS),
                        help="the hyperparameters to sweep (default: all five)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    run_sweeps(args.dataset, args.seeds, args.profile, args.only, args.device)


if __name__ == "__main__":
    main()
