"""Multi-seed comparison: ``python -m fatsmb_lib.studies.compare --dataset ml100k --seeds 0 1 2``.

Trains, for every seed, Pop and every registered baseline (``training.peers.BASELINES``: Table
3's eight and our SASRec, GRU4Rec and behavior-aware SASRec), the MBAE and FatsMB under the
profile (``full`` by default, the README's headline); ``--ablations`` adds the MBAE with each
position scheme (APE, RoPE, BaRoPE; Table 4's MBAE rows) and FatsMB with each denoiser and
parameterisation (Table 4's FatsMB rows). It reports validation and test Recall/NDCG@10/20 as
mean ± std over seeds in ``reports/<dataset>/comparison.{json,md}`` (another profile:
``comparison-<profile>.*``). Checkpoints go to ``runs/compare-<dataset>-<profile>/``, so an
interrupted comparison resumes where it stopped, and seeds can run in parallel processes
(``--seeds 1`` beside ``--seeds 0``) before one ``--seeds 0 1 2`` run reloads them all and
writes the report. ``--add NAME ...`` trains only those baselines and adds them to the committed
report of the same seeds and settings, keeping its other rows (a fresh checkout has none of
their checkpoints); ``--ours`` likewise re-trains only the MBAE and FatsMB, when only FatsMB's
own settings changed (:data:`FATSMB_ONLY_SETTINGS`). ``--headline`` prints the README's
headline from the committed report (:func:`headline`), training nothing.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from pathlib import Path

from ..models.denoiser import ABLATION
from ..models.encoder import POSITIONS
from ..support.checkpoints import write_text
from ..support.paths import project_root
from ..training.config import (
    HEADLINE_PROFILE,
    DenoiserSettings,
    DiffusionSettings,
    get_profile,
)
from ..training.context import Context
from ..training.evaluate import format_metrics_table, mean_std
from ..training.peers import BASELINES, fit_pop
from ..training.registry import train
from ..training.run import open_run
from ..training.stages import finetune_decoder, prefix_latents, train_denoiser, train_mbae
from .verdicts import HOLDS, TIES, format_mean_std, percent_change, relation, verdict

# The paper's Table 3 baselines, in its order; every one is registered with ``paper=True``
# (tested), and its "Improve" row compares FatsMB against the best of them. The other
# registered baselines (SASRec, GRU4Rec, the behavior-aware SASRec) are ours.
TABLE3_BASELINES = ("BERT4Rec", "DiffuRec", "MBGCN", "MB-GMN", "MB-STR", "PBAT", "MISSL", "M-GPT")
PAPER_BASELINES = tuple(name for name, spec in BASELINES.items() if spec.paper)
# Table 3's NDCG@10 of each of the paper's baselines on Yelp, Retail and IJCAI (one run each)
PAPER_TABLE3_NDCG10 = {
    "BERT4Rec": (0.0245, 0.0811, 0.1473), "DiffuRec": (0.0280, 0.0860, 0.1702),
    "MBGCN": (0.0229, 0.0801, 0.1401), "MB-GMN": (0.0257, 0.0829, 0.1488),
    "MB-STR": (0.0275, 0.0887, 0.1999), "PBAT": (0.0207, 0.0820, 0.1625),
    "MISSL": (0.0283, 0.0854, 0.1792), "M-GPT": (0.0250, 0.0908, 0.1826),
}

# The profile fields only FatsMB's stages 2-3 read: changing one leaves the weights of every
# baseline and of the MBAE as they were (tested), so ``--ours`` re-trains FatsMB's rows alone.
# Not ``eta`` (DiffuRec's sampler too) nor ``prefixes_per_user`` (the next-item epochs too).
FATSMB_ONLY_SETTINGS = frozenset(
    {f.name for cls in (DiffusionSettings, DenoiserSettings) for f in dataclasses.fields(cls)}
    - {"eta", "prefixes_per_user"}
    | {"stage2_batch_size", "stage2_epochs", "stage3_epochs", "stage3_keeps_stage2"})


def run_added(ctx: Context, names: list[str], log=print) -> dict[str, dict[str, dict]]:
    """{split: {name: metrics}} of the registered baselines ``names`` only, for one seed."""
    results: dict[str, dict] = {"valid": {}, "test": {}}
    for name in names:
        model, history = train(BASELINES[name], ctx)
        for split in results:
            results[split][name] = {**ctx.evaluate(model, split),
                                    "train_seconds": round(sum(history.seconds), 1)}
        log(f"  seed {ctx.seed} {name:<28} valid NDCG@10 {results['valid'][name]['NDCG@10']:.4f}"
            f"  test NDCG@10 {results['test'][name]['NDCG@10']:.4f}")
    return results


def own_settings(names: list[str]) -> set[str]:
    """The profile fields that belong to the registered baselines ``names`` alone
    (``ModelSpec.settings``)."""
    return {f.name for name in names if BASELINES[name].settings
            for f in dataclasses.fields(BASELINES[name].settings)}


def check_same_settings(report: dict, profile: dict, added: tuple[str, ...] = (),
                        exempt: frozenset[str] = frozenset()) -> None:
    """Refuse to add to ``report`` when it was made under other settings: every field its
    profile has must have the same value in ``profile``, except ``exempt`` and the own
    settings of baselines that no row of the report depends on: those being ``added``
    (trained now, e.g. with a validation search's choice) and those not in the report. New
    fields are allowed."""
    exempt = exempt | own_settings([name for name in BASELINES
                                    if name in added or name not in report["mean_std"]["test"]])
    changed = {k: (v, profile.get(k)) for k, v in report["profile"].items()
               if profile.get(k) != v and k not in exempt}
    if changed:
        raise ValueError(f"the committed comparison was made under other settings {changed} "
                         f"(then, today): re-run the whole comparison instead of adding to it")


def merge_into(report: dict, added: list[dict], profile: dict) -> list[dict]:
    """``report``'s per-seed results with the rows of ``added`` (one per seed, same seeds)
    placed before the MBAE and FatsMB rows (refused under other settings,
    :func:`check_same_settings`)."""
    check_same_settings(report, profile, tuple(added[0]["test"]))
    merged = []
    for old, new in zip(report["per_seed"], added):
        seed = {}
        for split in old:
            rows = {n: m for n, m in old[split].items() if n not in new[split]}
            ours = [n for n in rows if n.startswith(("MBAE", "FatsMB"))]
            seed[split] = {**{n: rows[n] for n in rows if n not in ours}, **new[split],
                           **{n: rows[n] for n in ours}}
        merged.append(seed)
    return merged


def replace_ours(report: dict, new: list[dict], profile: dict) -> list[dict]:
    """``report``'s per-seed results with its rows of the same names as ``new``'s (the MBAE
    and FatsMB, one result per seed, same seeds) replaced in place; refused unless every
    setting that differs is FatsMB's alone (:data:`FATSMB_ONLY_SETTINGS`)."""
    check_same_settings(report, profile, exempt=FATSMB_ONLY_SETTINGS)
    missing = set(new[0]["test"]) - set(report["per_seed"][0]["test"])
    if missing:
        raise ValueError(f"the committed comparison has no rows {sorted(missing)} to replace: "
                         "re-run the whole comparison")
    return [{split: {name: fresh[split].get(name, metrics) for name, metrics in old[split].items()}
             for split in old} for old, fresh in zip(report["per_seed"], new)]


def run_seed(ctx: Context, ablations: bool = False, log=print) -> dict[str, dict[str, dict]]:
    """{split: {model name: metrics}} for one seed; metrics carry ``train_seconds``, the
    wall time of the model's own training epochs (validation included).

    The headline models are Pop, every baseline, the MBAE with the profile's position and
    FatsMB with the profile's denoiser; ``ablations`` adds the other positions and Table 4's
    denoiser variants. FatsMB trains first, so an interrupted run has its main rows early.
    """
    results, record = _recorder(ctx, log)
    p = ctx.profile
    positions = POSITIONS if ablations else (p.position,)
    variants = ABLATION if ablations else ((p.denoiser, p.prediction),)
    mbae = _train_fatsmb(ctx, positions, variants, record)
    record("Pop", fit_pop(ctx), 0.0)
    for name, spec in BASELINES.items():
        model, history = train(spec, ctx)
        record(name, model, sum(history.seconds))
    for position, (model, history) in mbae.items():
        record(f"MBAE {position}", model, sum(history.seconds))
    # Table 3's order: the baselines, then the MBAE, then FatsMB
    order = sorted(results["test"], key=lambda name: name.startswith("FatsMB"))
    return {split: {name: rows[name] for name in order} for split, rows in results.items()}


def run_ours(ctx: Context, log=print) -> dict[str, dict[str, dict]]:
    """{split: {name: metrics}} of the MBAE and FatsMB rows of :func:`run_seed` alone (the
    profile's position and denoiser), for one seed."""
    results, record = _recorder(ctx, log)
    p = ctx.profile
    mbae = _train_fatsmb(ctx, (p.position,), ((p.denoiser, p.prediction),), record)
    model, history = mbae[p.position]
    record(f"MBAE {p.position}", model, sum(history.seconds))
    return results


def _recorder(ctx: Context, log):
    """Empty ``{split: {}}`` results and ``record(name, model, seconds)``, which evaluates
    ``model`` on both splits into them and logs its line."""
    results: dict[str, dict] = {"valid": {}, "test": {}}

    def record(name: str, model, seconds: float) -> None:
        for split in results:
            results[split][name] = {**ctx.evaluate(model, split), "train_seconds": round(seconds, 1)}
        log(f"  seed {ctx.seed} {name:<28} valid NDCG@10 {results['valid'][name]['NDCG@10']:.4f}"
            f"  test NDCG@10 {results['test'][name]['NDCG@10']:.4f}  ({seconds:.0f} s)")
    return results, record


def _train_fatsmb(ctx: Context, positions, variants, record) -> dict:
    """Train (or reload) the MBAE at each of ``positions`` and, on the profile's, FatsMB with
    each ``(denoiser, prediction)`` of ``variants``; record every FatsMB row after stage 2 and
    after stage 3 (its seconds count stages 1-3). Returns ``{position: (MBAE, history)}``."""
    p = ctx.profile
    mbae = {position: train_mbae(ctx.replace(position=position)) for position in positions}
    base, base_history = mbae[p.position]
    latents = prefix_latents(base, ctx)
    for kind, prediction in variants:
        variant = ctx.replace(denoiser=kind, prediction=prediction)
        model, stage2 = train_denoiser(base, variant, latents=latents)
        stage1_2 = sum(base_history.seconds) + sum(stage2.seconds)
        record(f"FatsMB {kind} {prediction} (stage 2)", model, stage1_2)
        stage3 = finetune_decoder(model, variant, latents=latents)
        record(f"FatsMB {kind} {prediction}", model, stage1_2 + sum(stage3.seconds))
    return mbae


def report_name(profile: str) -> str:
    """``comparison`` for the headline profile, ``comparison-<profile>`` for any other."""
    return "comparison" if profile == HEADLINE_PROFILE else f"comparison-{profile}"


def run_comparison(dataset: str, seeds: list[int], profile: str = HEADLINE_PROFILE,
                   device: str = "auto", data_dir: str | Path | None = None, ablations: bool = False,
                   log=print, run_dir: Path | None = None, out_dir: Path | None = None,
                   add: list[str] | None = None, ours: bool = False, **overrides) -> dict:
    """Every model of :func:`run_seed` for each seed, aggregated as mean ± std, written to
    ``<out_dir>/<report_name(profile)>.{json,md}`` (default ``reports/<dataset>``);
    checkpoints in ``run_dir`` (default ``runs/compare-<dataset>-<profile>/``: an interrupted
    comparison resumes, and single seeds run in parallel processes share the folder).
    ``overrides`` change profile fields (for tests). ``add``: train only these registered
    baselines and add them to the committed report of the same seeds and settings
    (:func:`merge_into`), keeping its other rows, whose checkpoints a fresh checkout lacks.
    ``ours``: train only the MBAE and FatsMB and put them in place of the committed report's
    rows (:func:`replace_ours`), e.g. after a change to FatsMB's stages 2-3."""
    root = project_root()
    run_dir = run_dir or root / "runs" / f"compare-{dataset}-{profile}"
    per_seed = []
    start = time.perf_counter()
    out = out_dir or root / "reports" / dataset
    name = report_name(profile)
    if add and ours:
        raise ValueError("--add and --ours each update the committed report: "
                         "run one, then the other")
    if add or ours:   # refuse before training what could not be merged
        committed = json.loads((out / f"{name}.json").read_text())
        if committed["seeds"] != seeds:
            raise ValueError(f"{out / name}.json has seeds {committed['seeds']}, not {seeds}")
        check_same_settings(committed, get_profile(profile, dataset, data_dir)
                            .replace(**overrides).to_dict(), tuple(add or ()),
                            FATSMB_ONLY_SETTINGS if ours else frozenset())
    for seed in seeds:
        ctx = open_run(dataset, profile, device, run_dir, data_dir, seed, **overrides)
        per_seed.append(run_added(ctx, add, log) if add else run_ours(ctx, log) if ours
                        else run_seed(ctx, ablations, log))
    if add:
        per_seed = merge_into(committed, per_seed, ctx.profile.to_dict())
    elif ours:
        per_seed = replace_ours(committed, per_seed, ctx.profile.to_dict())
    summary = {split: {name: mean_std([r[split][name] for r in per_seed]) for name in per_seed[0][split]}
               for split in ("valid", "test")}
    minutes = (time.perf_counter() - start) / 60 + (committed["minutes"] if add or ours else 0)
    report = {"dataset": dataset, "profile": ctx.profile.to_dict(), "seeds": seeds,
              "minutes": round(minutes, 1),           # every sitting's, when models were added
              "mean_std": summary, "per_seed": per_seed}
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / f"{name}.json", json.dumps(report, indent=2) + "\n")
    text = [f"# {dataset}: mean ± std over seeds {seeds} (profile `{profile}`, full ranking)", "",
            "`train minutes`: wall time of the model's own training epochs, validation included "
            "(FatsMB: stages 1-3).", ""]
    keys = ("Recall@10", "NDCG@10", "Recall@20", "NDCG@20", "train minutes")
    for split in ("valid", "test"):
        minutes = {name: "{:.1f} ± {:.1f}".format(*(x / 60 for x in m["train_seconds"]))
                   for name, m in summary[split].items()}
        shown = {name: {**m, "train minutes": minutes[name]} for name, m in summary[split].items()}
        text += [f"## {split}", "", format_metrics_table(shown, keys), ""]
    behaviors = list(next(iter(summary["test"].values()))["per_behavior"])
    for metric in ("NDCG@10", "Recall@10"):
        per_behavior = {name: {b: m["per_behavior"][b][metric] for b in behaviors}
                        for name, m in summary["test"].items()}
        text += [f"## test {metric} per target behavior", "",
                 format_metrics_table(per_behavior, tuple(behaviors)), ""]
    write_text(out / f"{name}.md", "\n".join(text))
    log("\n".join(text))
    return report


def improve(test: dict, ours: str, baselines: list[str], keys) -> tuple[dict, dict]:
    """Table 3's "Improve" row: per metric of ``keys``, the best of ``baselines`` by its mean
    over seeds, and ``ours``'s change against it in percent. ``test[name][key]`` is a
    ``(mean, std)`` pair (``comparison.json``'s ``mean_std``)."""
    best = {key: max(baselines, key=lambda name: test[name][key][0]) for key in keys}
    return best, {key: percent_change(test[ours][key], test[best[key]][key]) for key in keys}


def quiet_epoch_seconds(cost: dict, name: str) -> str:
    """The seconds of one training epoch of the comparison's row ``name`` on a quiet machine,
    from the cost study (``cost.json``, one model at a time). The MBAE's row is FatsMB's stage
    1, FatsMB's rows sum the stages they went through; "—" where the study has no number."""
    models = cost["models"]
    stages = models.get("FatsMB", {}).get("stages", {})
    parts = (("stage 1",) if name.startswith("MBAE") else
             ("stage 1", "stage 2") if name.startswith("FatsMB") and "(stage 2)" in name else
             ("stage 1", "stage 2", "stage 3") if name.startswith("FatsMB") else None)
    if parts:
        seconds = [stages[part]["seconds"] for part in parts if part in stages]
        return f"{sum(seconds):.1f}" if len(seconds) == len(parts) else "—"
    if name in models:
        return f"{sum(stage['seconds'] for stage in models[name]['stages'].values()):.1f}"
    return "—"


def committed_cost(folder: Path, report: dict) -> dict | None:
    """``folder``'s cost study (``cost.json``) when it was measured under ``report``'s profile
    and dataset, else None."""
    path = folder / "cost.json"
    cost = json.loads(path.read_text()) if path.is_file() else None
    same = cost and (cost["profile"], cost["dataset"]) == (report["profile"]["name"],
                                                          report["dataset"])
    return cost if same else None


def paper_orderings(test: dict, metric: str = "NDCG@10") -> list[dict]:
    """The orderings among the paper's baselines that its Table 3 shows on all three datasets
    (A above B on Yelp, Retail and IJCAI, NDCG@10), each checked here on ``test`` (``{name:
    {metric: (mean, std)}}``, the comparison's test rows): ``here`` is "holds", "tie" or
    "reversed" by the one-std rule. Pairs with a model not in ``test`` are left out."""
    rows = []
    for a, b in itertools.permutations(PAPER_TABLE3_NDCG10, 2):
        if all(x > y for x, y in zip(PAPER_TABLE3_NDCG10[a], PAPER_TABLE3_NDCG10[b])) \
                and a in test and b in test:
            here = {HOLDS: "holds", TIES: "tie"}.get(verdict(test[a][metric], test[b][metric]),
                                                     "reversed")
            rows.append({"paper": f"{a} > {b}", "A": a, "B": b, "here": here,
                         "A here": format_mean_std(test[a][metric]),
                         "B here": format_mean_std(test[b][metric])})
    return rows


def headline(report: dict, metric: str = "NDCG@10", cost: dict | None = None) -> str:
    """The README's headline from a comparison report (``comparison.json``): test metrics as
    mean ± std per model, where FatsMB stands against each by the one-std tie rule
    (:mod:`fatsmb_lib.studies.verdicts`), and its change (Table 3's "Improve") against the best
    baseline, the best of the paper's own Table 3 baselines, and its own MBAE. With ``cost``
    (``cost.json`` of the same dataset and profile), each model's training seconds per epoch
    on a quiet machine (:func:`quiet_epoch_seconds`).
    ``tests/test_readme.py`` checks that the README shows exactly this text;
    ``python -m fatsmb_lib.studies.compare --headline`` prints it."""
    profile = report["profile"]
    fatsmb = f"FatsMB {profile['denoiser']} {profile['prediction']}"
    mbae = f"MBAE {profile['position']}"
    shown = ("Recall@10", "NDCG@10", "Recall@20", "NDCG@20")
    # (mean, std) pairs; JSON holds them as lists
    test = {name: {key: tuple(m[key]) for key in shown} for name, m in report["mean_std"]["test"].items()}
    valid = {name: tuple(m[metric]) for name, m in report["mean_std"]["valid"].items()}
    ours = test[fatsmb][metric]
    column = f"FatsMB is (test {metric})"
    quiet = "s / epoch, quiet"
    rows = {name: {**m, f"valid {metric}": valid[name],
                   **({quiet: quiet_epoch_seconds(cost, name)} if cost else {}),
                   column: "—" if name == fatsmb else relation(ours, m[metric], "ahead", "tied",
                                                                  "behind")}
            for name, m in test.items()}
    baselines = [name for name in test if name in BASELINES or name == "Pop"]
    best, change = improve(test, fatsmb, baselines, shown)
    rows["Improve (FatsMB vs the best baseline)"] = {
        key: f"{change[key]:+.1f}% vs {best[key]}" for key in shown}
    table = format_metrics_table(rows, (*shown, f"valid {metric}", *([quiet] if cost else []),
                                        column))

    def against(names: list[str], label: str) -> str:
        best, change = improve(test, fatsmb, names, (metric,))
        theirs = test[best[metric]][metric]
        return (f"- Against {label}, {best[metric]} ({format_mean_std(theirs)}): FatsMB is "
                f"**{relation(ours, theirs)}** it ({change[metric]:+.1f}% {metric}).")

    paper_run = [name for name in PAPER_BASELINES if name in test]
    return "\n".join([
        table, "",
        f"Test {metric} of FatsMB ({fatsmb}): {format_mean_std(ours)}, mean ± std over "
        f"{len(report['seeds'])} seeds, profile `{profile['name']}`; a gap within one standard "
        f"deviation is a tie.",
        "",
        against(baselines, "the best baseline here"),
        against(paper_run, f"the best of the paper's own Table 3 baselines in this comparison "
                           f"({', '.join(paper_run)})"),
        against([mbae], "its own MBAE"),
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml100k")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--profile", default=HEADLINE_PROFILE)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", default=None, help="default: the checkout's data/")
    parser.add_argument("--ablations", action="store_true",
                        help="also the other MBAE positions and Table 4's denoiser variants")
    parser.add_argument("--add", nargs="+", default=None, metavar="BASELINE",
                        help="train only these baselines and add them to the committed report")
    parser.add_argument("--ours", action="store_true",
                        help="train only the MBAE and FatsMB and replace their rows in the "
                             "committed report (allowed when only FatsMB's own settings changed)")
    parser.add_argument("--headline", action="store_true",
                        help="print the README's headline from the committed report; trains nothing")
    args = parser.parse_args(argv)
    if args.headline:
        folder = project_root() / "reports" / args.dataset
        report = json.loads((folder / f"{report_name(args.profile)}.json").read_text())
        print(headline(report, cost=committed_cost(folder, report)))
        return
    run_comparison(args.dataset, args.seeds, args.profile, args.device, args.data_dir,
                   args.ablations, add=args.add, ours=args.ours)


if __name__ == "__main__":
    main()
