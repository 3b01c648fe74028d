"""Figure 7, few-shot: how FatsMB and its peers hold up when one behavior's training data go.

The paper drops a share of one target behavior's training interactions (Yelp's *like*: 0 to
1, where 1 is zero-shot), keeps the prediction data, and reports that FatsMB beats MB-STR at
every share, that a mild drop (0.2) barely moves it while the baseline falls, and that at
zero shot it keeps some accuracy where the baseline collapses (Section 4.4.2). Its figure has
two panels, which we read as the two ways the same test users can be scored:

- **behavior-specific**: every test user, each under its own target behavior (the headline
  metric): what the drop costs the model as a whole;
- **behavior-fixed**: only the test users whose target is the dropped behavior, under it:
  what is left of that behavior's recommendations.

Here the dropped behavior is the dataset's sparsest in training (on ml100k ``neg``, ratings
1-2, about a sixth of the interactions: the behavior a latent transfer from the others should
help most). ``preprocess.drop_behavior`` removes the share (the run's seed draws which ones;
the sets are nested across shares), and every model of ``MODELS`` is trained on what is left
and selected on validation.

``python -m fatsmb_lib.studies.few_shot --seeds 0 1 2`` writes the ledger
``reports/<dataset>/few_shot.json`` (``studies.ledger``: resumable), its table ``.md`` and
the figure ``.png``; checkpoints go to ``runs/few-shot-<dataset>-<profile>/share-<s>/``
(share 0's to the profile's own folder: see :func:`share_run_dir`).
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ..data.preprocess import SequenceData, drop_behavior
from ..support.checkpoints import write_text
from ..support.paths import project_root
from ..training.context import Context
from ..training.evaluate import format_metrics_table
from ..training.peers import BEHAVIOR_SASREC, MB_STR
from ..training.registry import train
from ..training.run import open_run
from ..training.stages import finetune_decoder, prefix_latents, train_denoiser, train_mbae
from .ledger import Ledger
from .verdicts import MIN_SEEDS, format_mean_std, summarize

SHARES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
MODELS = ("FatsMB", "MBAE", "MB-STR", "BehaviorSASRec")
PANELS = {"specific": "behavior-specific (every test user)",
          "fixed": "behavior-fixed (the dropped behavior's test users)"}
REPORT = "few_shot"


def sparsest_behavior(data: SequenceData) -> str:
    """The behavior with the fewest training interactions."""
    counts = np.bincount(data.split().train_behaviors, minlength=data.n_behaviors + 1)[1:]
    return data.behavior_names[int(np.argmin(counts))]


def cell(share: float) -> str:
    """The ledger's name for a share's runs."""
    return f"share={share}"


def cell_share(name: str) -> float:
    """The share a ledger cell holds (the inverse of :func:`cell`)."""
    return float(name.removeprefix("share="))


def run_share(ctx: Context, behavior: str, log=print) -> dict[str, dict]:
    """{model: {"specific", "fixed", "valid", "seconds"}} trained on ``ctx.data`` (already
    thinned): test NDCG@10 of every user and of ``behavior``'s users, validation NDCG@10."""
    mbae, stage1 = train_mbae(ctx)
    latents = prefix_latents(mbae, ctx)
    fatsmb, stage2 = train_denoiser(mbae, ctx, latents=latents)
    stage3 = finetune_decoder(fatsmb, ctx, latents=latents)
    trained = {"FatsMB": (fatsmb, [*stage1.seconds, *stage2.seconds, *stage3.seconds]),
               "MBAE": (mbae, stage1.seconds)}
    for name, spec in (("MB-STR", MB_STR), ("BehaviorSASRec", BEHAVIOR_SASREC)):
        model, history = train(spec, ctx)
        trained[name] = (model, history.seconds)
    row = {}
    for name, (model, seconds) in trained.items():
        test = ctx.evaluate(model, "test")
        row[name] = {"specific": test["NDCG@10"],
                     "fixed": test["per_behavior"][behavior]["NDCG@10"],
                     "valid": ctx.evaluate(model, "valid")["NDCG@10"],
                     "seconds": round(float(np.sum(seconds)), 1)}
        log(f"  seed {ctx.seed} {name:<15} specific {row[name]['specific']:.4f} "
            f"fixed ({behavior}) {row[name]['fixed']:.4f}")
    return row


def curves(ledger: Ledger, shares, panel: str) -> dict[str, list]:
    """{model: [(mean, std) or None per share]}: None where a share has < MIN_SEEDS seeds."""
    out = {}
    for name in MODELS:
        out[name] = []
        for share in shares:
            runs = ledger.runs(cell(share))
            out[name].append(summarize([r[name][panel] for r in runs.values()])
                             if len(runs) >= MIN_SEEDS else None)
    return out


def figure(ledger: Ledger, shares) -> plt.Figure:
    """Test NDCG@10 against the share dropped, one panel per way of scoring, error bands of
    one seed-std."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=False)
    for ax, (panel, title) in zip(axes, PANELS.items()):
        for name, values in curves(ledger, shares, panel).items():
            xs = [s for s, v in zip(shares, values) if v is not None]
            mean = np.array([v[0] for v in values if v is not None])
            std = np.array([v[1] for v in values if v is not None])
            if xs:
                ax.plot(xs, mean, marker="o", label=name)
                ax.fill_between(xs, mean - std, mean + std, alpha=0.2)
        ax.set_xlabel(f"share of {ledger.meta['behavior']}'s training interactions dropped")
        ax.set_ylabel("test NDCG@10")
        ax.set_title(title)
        ax.set_xticks(list(shares))
    if axes[0].lines:                 # nothing to label until a share has its seeds
        axes[0].legend()
    fig.tight_layout()
    return fig


def write_report(out: Path, ledger: Ledger, shares) -> None:
    """The table (``.md``) and figure (``.png``) of the ledger's finished shares."""
    lines = [f"# Few-shot (Fig. 7) on {ledger.meta['dataset']}: {ledger.meta['behavior']} "
             f"dropped (profile `{ledger.meta['profile']}`, test NDCG@10, mean ± std over seeds)",
             ""]
    for panel, title in PANELS.items():
        table = {name: {f"{share}": format_mean_std(v) if v else "—"
                        for share, v in zip(shares, values)}
                 for name, values in curves(ledger, shares, panel).items()}
        lines += [f"## {title}", "", format_metrics_table(table, tuple(f"{s}" for s in shares)),
                  ""]
    write_text(out / f"{REPORT}.md", "\n".join(lines))
    fig = figure(ledger, shares)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{REPORT}.png", dpi=120)
    plt.close(fig)


def share_run_dir(run_dir: Path | None, dataset: str, profile: str, share: float) -> Path | str:
    """Where a share's checkpoints go: ``<run_dir>/share-<share>``, by default under
    ``runs/few-shot-<dataset>-<profile>``. Share 0 is the data as they are, so by default it
    trains in ``open_run``'s own folder (``""``: ``runs/<dataset>-<profile>``), where the
    sweeps and the other studies keep the profile's models: a checkpoint whose settings and
    data fingerprint match is loaded instead of trained again."""
    if run_dir is None:
        if share == 0.0:
            return ""
        run_dir = project_root() / "runs" / f"few-shot-{dataset}-{profile}"
    return Path(run_dir) / f"share-{share}"


def ledger_shares(ledger: Ledger, shares) -> tuple[float, ...]:
    """``shares`` and every share the ledger already holds, in order: a run over some shares
    (one lane of several) reports them all."""
    return tuple(sorted({*shares, *map(cell_share, ledger.cells)}))


def run_few_shot(dataset: str, seeds: list[int], profile: str = "default", shares=SHARES,
                 device: str = "auto", run_dir: Path | None = None, out_dir: Path | None = None,
                 data_dir: str | Path | None = None, log=print, **overrides) -> Ledger:
    """Every share for every seed (runs already in the ledger are kept), the report rewritten
    after each. ``overrides`` change profile fields (for tests)."""
    root = project_root()
    out = out_dir or root / "reports" / dataset
    ledger = None
    for share in shares:
        for seed in seeds:
            if ledger is not None and ledger.done(cell(share), seed):
                continue                    # finished: no data to load, nothing to train
            folder = share_run_dir(run_dir, dataset, profile, share)
            ctx = open_run(dataset, profile, device, folder, data_dir, seed, **overrides)
            behavior = sparsest_behavior(ctx.data)
            ledger = ledger or Ledger(out / f"{REPORT}.json", dataset=dataset, profile=profile,
                                      behavior=behavior)
            if ledger.done(cell(share), seed):
                continue
            start = time.perf_counter()
            thinned = dataclasses.replace(ctx, data=drop_behavior(ctx.data, behavior, share, seed))
            ledger.record(cell(share), seed, run_share(thinned, behavior, log))
            log(f"share {share} seed {seed}: {time.perf_counter() - start:.0f} s")
            write_report(out, ledger, ledger_shares(ledger, shares))
    write_report(out, ledger, ledger_shares(ledger, shares))
    return ledger


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml100k")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--shares", type=float, nargs="+", default=list(SHARES))
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    run_few_shot(args.dataset, args.seeds, args.profile, args.shares, args.device,
                 out_dir=args.out_dir)


if __name__ == "__main__":
    main()
