"""A small validation-only search for Table 3's five added baselines: ``python -m
fatsmb_lib.studies.peer_search``.

Each of MBGCN, MB-GMN, PBAT, MISSL and M-GPT gets the same epoch budget and patience as every
other baseline of the headline profile, and a search over the one setting its paper (or its
authors' code, where the paper reports none) says matters most, :data:`SEARCH`:

- MBGCN: λ, the weight of the item-based score against the user-based one (its paper's
  sensitivity study);
- MB-GMN: the number of GNN layers (its paper's depth study);
- PBAT: the mask probability ρ (its authors' 0.2, and 0.3 on IJCAI);
- MISSL: the number of interests K per behavior (its paper's study);
- M-GPT: the number of graph orders K of its interaction-level encoder (its paper's study).

Every candidate trains once, on seed 0, into the comparison's run folder
(``runs/compare-<dataset>-<profile>/``), and is judged on VALIDATION NDCG@10 only; the test item
is never read. The candidate that is the profile's value shares its checkpoint with the
comparison's seed 0, and so does the winner once the profile holds it (``tests/test_peer_search``
checks that the headline profile holds the ledger's winners); ``compare --add`` then trains
seeds 1 and 2. One seed cannot separate close candidates; the search picks the best of what
it saw, and the report shows every candidate's score beside the winner's.

Results go to the ledger ``reports/<dataset>/peer_search.{json,md}`` (:class:`Ledger`):
resumable, and a candidate in it is never trained again.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..support.checkpoints import write_text
from ..support.paths import project_root
from ..training.config import HEADLINE_PROFILE, get_profile
from ..training.evaluate import format_metrics_table
from ..training.peers import BASELINES
from ..training.registry import train
from ..training.run import open_run
from .ledger import Ledger

SEARCH: dict[str, tuple[str, tuple]] = {
    "MBGCN": ("mbgcn_lambda", (0.1, 0.5, 1.0)),
    "MB-GMN": ("mbgmn_layers", (1, 2, 3)),
    "PBAT": ("pbat_rho", (0.2, 0.3)),
    "MISSL": ("missl_interests", (8, 16, 32)),
    "M-GPT": ("mgpt_orders", (2, 3, 4)),
}
SEED = 0
MONITOR = "NDCG@10"


def cell(model: str, value) -> str:
    """The ledger's name of one candidate: ``"MBGCN mbgcn_lambda=0.5"``."""
    return f"{model} {SEARCH[model][0]}={value}"


def run_search(dataset: str = "ml100k", profile: str = HEADLINE_PROFILE,
               models: list[str] | None = None, device: str = "auto",
               out_dir: Path | None = None, run_dir: Path | None = None,
               data_dir: str | Path | None = None, log=print, **overrides) -> Ledger:
    """Train every candidate of ``models`` (default: all of :data:`SEARCH`) on seed 0 not yet in
    the ledger, record its validation metrics and epochs, and rewrite the report.
    ``overrides`` change profile fields (for tests)."""
    root = project_root()
    out = out_dir or root / "reports" / dataset
    run_dir = run_dir or root / "runs" / f"compare-{dataset}-{profile}"
    ledger = Ledger(out / "peer_search.json", dataset=dataset, profile=profile, seed=SEED,
                    monitor=MONITOR, overrides=overrides)
    base = get_profile(profile, dataset, data_dir).replace(**overrides)   # the values marked
    for model in models or list(SEARCH):
        field, values = SEARCH[model]
        for value in values:
            name = cell(model, value)
            if ledger.done(name, SEED):
                continue
            ctx = open_run(dataset, profile, device, run_dir, data_dir, SEED,
                           **{**overrides, field: value})
            trained, history = train(BASELINES[model], ctx)
            metrics = ctx.evaluate(trained, "valid")
            ledger.record(name, SEED, {
                "valid": {k: metrics[k] for k in ("Recall@10", "NDCG@10", "Recall@20", "NDCG@20")},
                "best_epoch": history.best_epoch, "epochs": len(history.seconds),
                "train_seconds": round(sum(history.seconds), 1)})
            log(f"{name:<32} valid {MONITOR} {metrics[MONITOR]:.4f}  "
                f"(best epoch {history.best_epoch} of {len(history.seconds)})")
            write_report(out, ledger, base)     # an interruption keeps the report current
    write_report(out, ledger, base)
    return ledger


def winners(ledger: Ledger) -> dict[str, tuple[str, object]]:
    """{model: (field, value)} of the candidate with the best validation score, for every model
    whose candidates are all in the ledger."""
    chosen = {}
    for model, (field, values) in SEARCH.items():
        runs = [ledger.runs(cell(model, v)).get(str(SEED)) for v in values]
        if all(runs):
            best = max(range(len(values)), key=lambda i: runs[i]["valid"][MONITOR])
            chosen[model] = (field, values[best])
    return chosen


def write_report(out: Path, ledger: Ledger, profile) -> str:
    """``peer_search.md``: every candidate's validation metrics, the winner per model and the
    profile's value beside it."""
    chosen = winners(ledger)
    rows = {}
    for model, (field, values) in SEARCH.items():
        for value in values:
            run = ledger.runs(cell(model, value)).get(str(SEED))
            if run is None:
                continue
            mark = []
            if getattr(profile, field) == value:
                mark.append("profile")
            if chosen.get(model) == (field, value):
                mark.append("best")
            rows[cell(model, value)] = {
                **{f"valid {k}": v for k, v in run["valid"].items()},
                "best epoch / epochs": f"{run['best_epoch']} / {run['epochs']}",
                "train minutes": f"{run['train_seconds'] / 60:.1f}",
                "": ", ".join(mark)}
    keys = ("valid Recall@10", "valid NDCG@10", "valid Recall@20", "valid NDCG@20",
            "best epoch / epochs", "train minutes", "")
    meta = ledger.meta
    text = "\n".join([
        f"# Validation search for Table 3's added baselines ({meta['dataset']}, profile "
        f"`{meta['profile']}`, seed {SEED})", "",
        "One setting per model, each candidate trained once under the profile's budget and "
        f"patience, judged on validation {MONITOR} only (`fatsmb_lib.studies.peer_search`). "
        "`best`: the candidate chosen; `profile`: the profile's value, which the comparison "
        "trains (they agree once the profile holds the winner).", "",
        format_metrics_table(rows, keys) if rows else "(no candidate trained yet)", ""])
    write_text(out / "peer_search.md", text)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml100k")
    parser.add_argument("--profile", default=HEADLINE_PROFILE)
    parser.add_argument("--models", nargs="+", default=None, choices=sorted(SEARCH))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    run_search(args.dataset, args.profile, args.models, args.device)


if __name__ == "__main__":
    main()
