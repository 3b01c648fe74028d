"""The claims ledger: each claim of the paper this course checks, where, the number, the verdict.

Every claim is judged from the committed reports of ``reports/<dataset>/`` (never by training),
so ``python -m fatsmb_lib.studies.claims`` and notebook 05 rewrite ``reports/claims.md`` in a
second. A verdict is one of

- **holds**: the measurement supports the claim; for "A beats B", A leads by more than one
  seed-std (``verdicts.verdict``) over at least three seeds;
- **does not hold**: it does not; a tie does not support a claimed ordering, and says so;
- **cannot be tested here**: the claim needs what this course cannot have (the reason is given);
- **not measured yet**: the study that will test it has not run; the row names its command.

A claim's row says where the course tests it (notebook and section) and under which profile
and seeds the number was measured, so a reader can rerun it.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..support.checkpoints import write_text
from ..support.paths import project_root
from ..training.evaluate import format_metrics_table
from ..training.peers import BASELINES
from .few_shot import cell_share
from .ledger import Ledger
from .sweeps import SWEEPS, curve
from .sweeps import cell as sweep_cell
from .verdicts import HOLDS, MIN_SEEDS, TIES, format_mean_std, summarize, verdict

HOLD, NOT_HOLD, CANNOT, PENDING = ("holds", "does not hold", "cannot be tested here",
                                   "not measured yet")
VERDICTS = (HOLD, NOT_HOLD, CANNOT, PENDING)


@dataclass(frozen=True)
class Finding:
    """A claim's verdict and the measurement behind it (numbers with spread, data, settings)."""

    verdict: str
    measured: str


@dataclass(frozen=True)
class Claim:
    """One claim: where the paper makes it, a short paraphrase, where the course tests it, and
    ``judge(reports)``, which reads the dataset's report folder and returns a :class:`Finding`."""

    source: str
    text: str
    where: str
    judge: Callable[[Path], Finding]


def _report(reports: Path, name: str) -> dict | None:
    path = reports / name
    return json.loads(path.read_text()) if path.is_file() else None


def beats(ours: tuple, theirs: tuple, rival: str, measured: str) -> Finding:
    """The finding of "A beats ``rival``" from their (mean, std): it holds when A leads by
    more than one seed-std; otherwise ``measured`` says whether it was a tie or the rival led."""
    outcome = verdict(ours, theirs)
    if outcome == HOLDS:
        return Finding(HOLD, measured)
    return Finding(NOT_HOLD, measured + (": a tie" if outcome == TIES else f": {rival} ahead"))


def ordering(report: str, a: str, b: str, metric: str = "NDCG@10", split: str = "test",
             note: str = "") -> Callable[[Path], Finding]:
    """A judge of "A beats B" on ``split`` ``metric`` of a comparison report (mean ± std over
    its seeds): holds when A leads by more than one seed-std. ``note``: how the report's runs
    differ from today's recipe, shown with the number."""

    def judge(reports: Path) -> Finding:
        found = _report(reports, report)
        if found is None or a not in found["mean_std"][split] or b not in found["mean_std"][split]:
            return Finding(PENDING, f"needs {a} and {b} in {report}: "
                                    f"python -m fatsmb_lib.studies.compare --ablations")
        rows = found["mean_std"][split]
        measured = (f"{a} {format_mean_std(rows[a][metric])} vs {b} "
                    f"{format_mean_std(rows[b][metric])} ({split} {metric}, "
                    f"profile `{found['profile']['name']}`, "
                    f"seeds {found['seeds']}; {report}{'; ' + note if note else ''})")
        return beats(tuple(rows[a][metric]), tuple(rows[b][metric]), b, measured)

    return judge


def best_of(report: str, paper_only: bool, metric: str = "NDCG@10") -> Callable[[Path], Finding]:
    """A judge of "FatsMB beats the best baseline" (of the paper's baselines implemented here,
    or of all), the best chosen by test mean as Table 3's Improve row does."""

    def judge(reports: Path) -> Finding:
        found = _report(reports, report)
        if found is None:
            return Finding(PENDING, f"needs {report}: python -m fatsmb_lib.studies.compare")
        rows = found["mean_std"]["test"]
        names = [n for n in rows if n in BASELINES and (BASELINES[n].paper or not paper_only)]
        ours = next(n for n in reversed(rows) if n.startswith("FatsMB") and "stage 2" not in n)
        best = max(names, key=lambda n: rows[n][metric][0])
        return ordering(report, ours, best, metric)(reports)

    return judge


def entropy_asymmetry(reports: Path) -> Finding:
    """Table 1: H(B|I) is small next to H(I|B), the "asymmetric deterministic" of Section 1."""
    found = _report(reports, "entropy.json")
    if found is None:
        return Finding(PENDING, "needs entropy.json: notebook 01")
    b_given_i, i_given_b = found["H(B|I)"], found["H(I|B)"]
    return Finding(HOLD if b_given_i < 0.25 * i_given_b else NOT_HOLD,
                   f"H(B|I) {b_given_i:.3f} vs H(I|B) {i_given_b:.3f} nats "
                   f"(ratio {b_given_i / i_given_b:.2f}; entropy.json, all interactions)")


def _sweep_ledger(reports: Path) -> Ledger | None:
    """The sweep study's ledger in ``reports`` (``sweeps.json``), or None."""
    path = reports / "sweeps.json"
    return Ledger(path) if path.is_file() else None


def sweep_trend(field: str, rises: bool) -> Callable[[Path], Finding]:
    """A judge of Fig. 8's "accuracy rises (falls) as ``field`` grows", on the sweep study's test
    NDCG@10 (``sweeps.json``, every point over at least three seeds): holds when the largest
    value is ahead of (behind) the smallest by more than one seed-std and no value in between
    beats the end the claim favours."""
    symbol = {"rho": "ρ", "sigma": "σ", "stride": "Δt"}.get(field, field)

    def judge(reports: Path) -> Finding:
        ledger = _sweep_ledger(reports)
        grid = SWEEPS[field][0]
        values = curve(ledger, field) if ledger else {}          # points with 3+ seeds
        short = [f"{v:g}" for v in grid if v not in values]
        if short:
            return Finding(PENDING, f"the {symbol} sweep (python -m fatsmb_lib.studies.sweeps "
                                    f"--only {field}): {', '.join(short)} need {MIN_SEEDS} seeds")
        lead, trail = (grid[-1], grid[0]) if rises else (grid[0], grid[-1])
        beaten = [v for v in grid[1:-1] if verdict(values[v], values[lead]) == HOLDS]
        trend = verdict(values[lead], values[trail]) == HOLDS
        seeds = len(ledger.runs(sweep_cell(field, grid[0])))
        measured = ", ".join(f"{symbol} {v:g}: {format_mean_std(values[v])}" for v in grid) + (
            f" ({SWEEPS[field][1]}, test NDCG@10, profile `{ledger.meta['profile']}`, "
            f"{seeds} seeds; sweeps.json)")
        return Finding(HOLD if trend and not beaten else NOT_HOLD, measured)

    return judge


def component(field: str, a: str, b: str, fallback: Callable[[Path], Finding]
              ) -> Callable[[Path], Finding]:
    """A judge of Table 4's "component A beats component B" (``field`` = position or denoiser)
    on test NDCG@20, Table 4's metric, from the sweep study on today's recipe (``sweeps.json``,
    both points over at least three seeds); until it has them, ``fallback`` (the earlier
    comparison over seeds)."""

    def judge(reports: Path) -> Finding:
        ledger = _sweep_ledger(reports)
        values = curve(ledger, field, "test", "NDCG@20") if ledger else {}
        if a not in values or b not in values:
            return fallback(reports)
        seeds = len(ledger.runs(sweep_cell(field, a)))
        measured = (f"{a} {format_mean_std(values[a])} vs {b} {format_mean_std(values[b])} "
                    f"(test NDCG@20, profile `{ledger.meta['profile']}`, {seeds} seeds, "
                    f"today's recipe; sweeps.json)")
        return beats(values[a], values[b], b, measured)

    return judge


def _fatsmb_at(omega: float) -> str:
    """The diversity report's row of FatsMB sampled at ``omega``."""
    return f"FatsMB ω={omega:g}"


def generation_diversity(reports: Path) -> Finding:
    """Fig. 1: FatsMB's lists (at the profile's ω) are more diverse than the scoring models'.
    Judged on intra-list diversity with bootstrap intervals over users (one trained model
    each): holds when FatsMB's interval lies above every other model's."""
    found = _report(reports, "diversity.json")
    if found is None:
        return Finding(PENDING, "the diversity study (python -m fatsmb_lib.studies.diversity): "
                                "not run yet")
    rows, metric = found["models"], "intra-list diversity"
    ours = _fatsmb_at(found["profile_omega"])
    others = [n for n in rows if not n.startswith("FatsMB")]
    low = rows[ours][metric][1]
    above = all(low > rows[n][metric][2] for n in others)
    measured = "; ".join(f"{n} {rows[n][metric][0]:.3f} [{rows[n][metric][1]:.3f}, "
                         f"{rows[n][metric][2]:.3f}]" for n in (ours, *others))
    return Finding(HOLD if above else NOT_HOLD,
                   f"{metric}: {measured} (profile `{found['profile']}`, seed {found['seed']}, "
                   f"{found['uncertainty']})")


def guidance_narrows(reports: Path) -> Finding:
    """Sec. 4.5.5: a higher ω narrows what is generated: intra-list diversity at the largest ω
    below that at ω = 0, their bootstrap intervals apart."""
    found = _report(reports, "diversity.json")
    if found is None:
        return Finding(PENDING, "the diversity study (python -m fatsmb_lib.studies.diversity): "
                                "not run yet")
    rows, metric = found["models"], "intra-list diversity"
    omegas = sorted(float(n.split("=")[1]) for n in rows if n.startswith("FatsMB ω="))
    lowest, highest = rows[_fatsmb_at(omegas[0])][metric], rows[_fatsmb_at(omegas[-1])][metric]
    measured = "; ".join(f"ω {w:g}: {rows[_fatsmb_at(w)][metric][0]:.3f}" for w in omegas)
    return Finding(HOLD if highest[2] < lowest[1] else NOT_HOLD,
                   f"{metric}: {measured} (profile `{found['profile']}`, seed {found['seed']}, "
                   f"{found['uncertainty']})")


def _few_shot(reports: Path) -> tuple[dict, dict] | None:
    """{share: {model: {panel: (mean, std)}}} of the few-shot ledger's shares with at least
    ``MIN_SEEDS`` seeds, and its meta; None without a ledger."""
    found = _report(reports, "few_shot.json")
    if found is None:
        return None
    shares = {}
    for cell, runs in found["cells"].items():
        if len(runs) >= MIN_SEEDS:
            models = next(iter(runs.values()))
            shares[cell_share(cell)] = {
                name: {panel: summarize([run[name][panel] for run in runs.values()])
                       for panel in ("specific", "fixed")} for name in models}
    return dict(sorted(shares.items())), found["meta"]


def few_shot(kind: str, rival: str = "MB-STR") -> Callable[[Path], Finding]:
    """The three claims of Section 4.4.2, against ``rival``, from the few-shot ledger:

    - ``"ahead"``: FatsMB beats it (one-std rule) at every share, in both panels;
    - ``"mild"``: dropping 20% leaves FatsMB tied with its share-0 self (behavior-fixed) while
      the rival falls by more than one std, and FatsMB keeps a larger part of its share-0
      NDCG at the largest share than the rival;
    - ``"zero"``: at zero shot (share 1) FatsMB beats the rival on the dropped behavior and
      keeps a larger part of its share-0 NDCG.
    Pending until the shares it needs have ``MIN_SEEDS`` seeds, except that one measured share
    where FatsMB is not ahead already refutes "ahead at every share"."""
    needs = {"ahead": (0.0, 0.2, 0.4, 0.6, 0.8, 1.0), "mild": (0.0, 0.2, 1.0), "zero": (0.0, 1.0)}

    def judge(reports: Path) -> Finding:
        loaded = _few_shot(reports)
        missing = [s for s in needs[kind] if loaded is None or s not in loaded[0]]
        shares, meta = loaded or ({}, {})
        ours, theirs = ({s: v[name] for s, v in shares.items()} for name in ("FatsMB", rival))
        lost = [f"{s} ({panel})" for s in shares for panel in ("specific", "fixed")
                if verdict(ours[s][panel], theirs[s][panel]) != HOLDS]
        if missing and not (kind == "ahead" and lost):
            return Finding(PENDING, f"{FEW_SHOT}: shares {missing} need {MIN_SEEDS} seeds")
        setting = (f"{meta['behavior']} dropped, test NDCG@10, profile `{meta['profile']}`, "
                   f"{MIN_SEEDS}+ seeds" + (f"; shares {missing} not run" if missing else ""))

        def kept(curve):   # the share of its share-0 NDCG a model keeps at the largest share
            return curve[max(curve)]["fixed"][0] / curve[0.0]["fixed"][0]

        if kind == "ahead":
            said = (f"FatsMB not ahead of {rival} at share {', '.join(lost)}" if lost else
                    f"FatsMB ahead of {rival} at every share, in both panels")
            return Finding(NOT_HOLD if lost else HOLD, f"{said} ({setting})")
        if kind == "mild":
            f_mild = verdict(ours[0.2]["fixed"], ours[0.0]["fixed"]) == TIES
            r_falls = verdict(theirs[0.0]["fixed"], theirs[0.2]["fixed"]) == HOLDS
            slower = kept(ours) > kept(theirs)
            return Finding(HOLD if f_mild and r_falls and slower else NOT_HOLD,
                           f"at 0.2 FatsMB {format_mean_std(ours[0.2]['fixed'])} vs its "
                           f"{format_mean_std(ours[0.0]['fixed'])} at 0, {rival} "
                           f"{format_mean_std(theirs[0.2]['fixed'])} vs "
                           f"{format_mean_std(theirs[0.0]['fixed'])}; kept at share "
                           f"{max(shares)}: FatsMB {kept(ours):.0%}, {rival} {kept(theirs):.0%}; "
                           f"FatsMB {'tied with' if f_mild else 'not tied with'} its share 0, "
                           f"{rival} {'falls' if r_falls else 'does not fall'} beyond a seed-std, "
                           f"FatsMB {'keeps more' if slower else 'keeps less'} ({setting})")
        ahead = verdict(ours[1.0]["fixed"], theirs[1.0]["fixed"]) == HOLDS
        return Finding(HOLD if ahead and kept(ours) > kept(theirs) else NOT_HOLD,
                       f"zero shot: FatsMB {format_mean_std(ours[1.0]['fixed'])} vs {rival} "
                       f"{format_mean_std(theirs[1.0]['fixed'])}; kept: FatsMB {kept(ours):.0%}, "
                       f"{rival} {kept(theirs):.0%} ({setting})")

    return judge


def training_cost(reports: Path) -> Finding:
    """Sec. 4.4.3 / App. E: FatsMB's training time and memory are comparable to the baselines'.
    From ``cost.json`` (one epoch of each model's own recipe, one model per process, a quiet
    machine): holds when FatsMB's epoch (its three stages) is within 2× the baselines' median
    epoch and its peak memory within their range."""
    found = _report(reports, "cost.json")
    if found is None:
        return Finding(PENDING, "the cost study (python -m fatsmb_lib.studies.cost): not run yet")
    models = found["models"]
    ours = sum(s["seconds"] for s in models["FatsMB"]["stages"].values())
    epochs = sorted(m["stages"]["epoch"]["seconds"] for n, m in models.items() if n != "FatsMB")
    memory = [m["peak_mib"] for n, m in models.items() if n != "FatsMB"]
    median = epochs[len(epochs) // 2]
    fits = ours <= 2 * median and min(memory) <= models["FatsMB"]["peak_mib"] <= max(memory)
    return Finding(HOLD if fits else NOT_HOLD,
                   f"one epoch: FatsMB {ours:.0f} s (stages 1-3), the baselines' median "
                   f"{median:.1f} s ({epochs[0]:.1f}-{epochs[-1]:.1f}); peak memory FatsMB "
                   f"{models['FatsMB']['peak_mib']:.0f} MiB, the baselines {min(memory):.0f}-"
                   f"{max(memory):.0f} (profile `{found['profile']}`, {found['device']}, quiet "
                   f"machine; cost.json)")


def length_scaling(reports: Path) -> Finding:
    """Sec. 4.4.3: the MBAE's cost is O(L²d + Ld²) per sequence, an upper bound. From the
    cost study's scaling rows (``cost.json``: one stage-1 epoch of every prefix per L, on
    generated data): the slope k of log(time per row) against log L; holds when k ≤ 2.2 (the
    bound allows growth up to quadratic, with a margin for timing noise)."""
    found = _report(reports, "cost.json")
    rows = (found or {}).get("scaling", {}).get("against_length")
    if not rows:
        return Finding(PENDING, "time against L on generated data (python -m "
                                "fatsmb_lib.studies.cost --scaling): not run yet")
    lengths = sorted(rows, key=int)
    per_row = [rows[n]["seconds"] / rows[n]["rows"] for n in lengths]
    slope = float(np.polyfit(np.log([int(n) for n in lengths]), np.log(per_row), 1)[0])
    measured = ", ".join(f"L {n}: {1000 * t:.2f} ms" for n, t in zip(lengths, per_row)) + (
        f" per row; log-log slope {slope:.2f} (the bound allows up to 2; "
        f"{found['scaling']['device']}, one MBAE epoch each; cost.json)")
    return Finding(HOLD if slope <= 2.2 else NOT_HOLD, measured)


def pending(study: str) -> Callable[[Path], Finding]:
    return lambda reports: Finding(PENDING, f"{study}: not run yet")


def cannot(reason: str) -> Callable[[Path], Finding]:
    return lambda reports: Finding(CANNOT, reason)


COST = "05 §5"
SWEPT = "05 §4"
FEW_SHOT = "the few-shot study (python -m fatsmb_lib.studies.few_shot)"
# the earlier Table 4 runs over seeds predate the every-prefix recipe; the sweep study
# re-measures them on today's, and its numbers replace these once they have three seeds
TABLE4_THEN = "the paper's non-overlapping Cloze windows, as `default` was then"
CLAIMS: tuple[Claim, ...] = (
    Claim("Sec. 1, Table 1", "A behavior is predictable from its item (low H(B|I)), an item is "
          "not from its behavior (high H(I|B))", "01 §2", entropy_asymmetry),
    Claim("Abstract, Table 3", "FatsMB beats every baseline", "04 §3",
          best_of("comparison.json", paper_only=False)),
    Claim("Table 3", "FatsMB beats the paper's baselines (the best of those implemented here)",
          "04 §3", best_of("comparison.json", paper_only=True)),
    Claim("Sec. 4.2", "Multi-behavior information improves a sequential model (the "
          "behavior-aware SASRec against SASRec)", "04 §4",
          ordering("comparison.json", "BehaviorSASRec", "SASRec")),
    Claim("Sec. 4.2", "A behavior-aware Cloze model beats a behavior-blind one (MB-STR against "
          "BERT4Rec)", "04 §3", ordering("comparison.json", "MB-STR", "BERT4Rec")),
    Claim("Sec. 4.2", "Diffusion improves a sequential recommender (DiffuRec against BERT4Rec)",
          "04 §3", ordering("comparison.json", "DiffuRec", "BERT4Rec")),
    Claim("Sec. 4.3.1, Table 4", "The latent diffusion improves on its own MBAE", "04 §4",
          ordering("comparison.json", "FatsMB mcgln x0", "MBAE barope")),
    *(Claim(source, text, f"{SWEPT} (Table 4); 04 §3",
            component(field, a, b, ordering("comparison-default.json", then_a, then_b,
                                            "NDCG@20", note=TABLE4_THEN)))
      for source, text, field, a, b, then_a, then_b in (
          ("Sec. 4.3.2, Table 4", "BaRoPE beats APE", "position", "barope", "ape",
           "MBAE barope", "MBAE ape"),
          ("Sec. 4.3.2, Table 4", "BaRoPE beats RoPE", "position", "barope", "rope",
           "MBAE barope", "MBAE rope"),
          ("Sec. 4.3.3, Table 4", "MCGLN beats the MLP denoiser", "denoiser", "mcgln", "mlp",
           "FatsMB mcgln eps", "FatsMB mlp eps"),
          ("Sec. 4.3.3, Table 4", "MCGLN beats AdaLN", "denoiser", "mcgln", "adaln",
           "FatsMB mcgln eps", "FatsMB adaln eps"))),
    Claim("Sec. 4.4.2, Fig. 7", "With a target behavior's training data dropped, FatsMB beats "
          "MB-STR on it, behavior-specific and behavior-fixed", "05 §2",
          few_shot("ahead")),
    Claim("Sec. 4.4.2, Fig. 7", "Dropping 20% of the target behavior hurts FatsMB little and the "
          "baselines more; FatsMB decays more slowly", "05 §2", few_shot("mild")),
    Claim("Sec. 4.4.2, Fig. 7", "At zero shot FatsMB keeps some accuracy while the baseline "
          "collapses", "05 §2", few_shot("zero")),
    Claim("Sec. 4.5.1, Fig. 8a", "A small item mask ratio ρ is best; accuracy falls as ρ grows",
          SWEPT, sweep_trend("rho", rises=False)),
    Claim("Sec. 4.5.2, Fig. 8b", "Accuracy falls as the behavior mask ratio σ grows", SWEPT,
          sweep_trend("sigma", rises=False)),
    Claim("Sec. 4.5.3, Fig. 8c", "More diffusion steps T improve accuracy (with diminishing "
          "returns, not judged)", SWEPT, sweep_trend("T", rises=True)),
    Claim("Sec. 4.5.4, Fig. 8d", "Larger sampling jumps Δt lower accuracy", SWEPT,
          sweep_trend("stride", rises=False)),
    Claim("Sec. 4.5.5, Fig. 8e", "The best guidance strength ω differs between datasets", "04 §5",
          cannot("needs two or more real datasets; only ml100k is on this machine (yelp, retail "
                 "and ijcai run where their files are: the loader reads them)")),
    Claim("Sec. 4.5.5", "A higher ω narrows the diversity of what is generated", "05 §3",
          guidance_narrows),
    Claim("Abstract, Fig. 1", "Generation gives more diverse recommendations than scoring",
          "05 §3", generation_diversity),
    Claim("Sec. 4.4.3, App. E", "FatsMB's training time and memory are comparable to the "
          "baselines'", COST, training_cost),
    Claim("Sec. 4.4.3", "Training time grows as O(L²d + Ld²) in the sequence length L", COST,
          length_scaling),
    Claim("Sec. 4.4.2", "The few-shot robustness comes from the transfer in the latent space "
          "(at zero shot FatsMB beats, and keeps more than, its own MBAE: the same latent space "
          "without the diffusion)", "05 §2", few_shot("zero", rival="MBAE")),
)


def findings(reports: Path, claims: tuple[Claim, ...] = CLAIMS) -> list[tuple[Claim, Finding]]:
    """Each claim judged from the reports in ``reports``."""
    return [(claim, claim.judge(reports)) for claim in claims]


def ledger_markdown(judged: list[tuple[Claim, Finding]], dataset: str) -> str:
    """The ledger as Markdown: the counts per verdict, then one row per claim."""
    counts = Counter(finding.verdict for _, finding in judged)
    rows = {f"{i}. {claim.text}": {"paper": claim.source, "tested in": claim.where,
                                   "verdict": finding.verdict, "measured": finding.measured}
            for i, (claim, finding) in enumerate(judged, 1)}
    return "\n".join([
        f"# The paper's claims, checked on {dataset}", "",
        "Written by `python -m fatsmb_lib.studies.claims` (and notebook 05) from the committed "
        "reports; the verdicts and the tie rule are explained in `fatsmb_lib/studies/claims.py`.",
        "", "; ".join(f"{verdict_}: {counts[verdict_]}" for verdict_ in VERDICTS), "",
        format_metrics_table(rows, ("paper", "tested in", "verdict", "measured"), label="claim"),
        ""])


def write_ledger(dataset: str = "ml100k", out: Path | None = None) -> list[tuple[Claim, Finding]]:
    """Judge every claim from ``reports/<dataset>/`` and write ``reports/claims.md``."""
    root = project_root() / "reports"
    judged = findings(root / dataset)
    write_text(out or root / "claims.md", ledger_markdown(judged, dataset))
    return judged


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml100k")
    args = parser.parse_args(argv)
    judged = write_ledger(args.dataset)
    print(ledger_markdown(judged, args.dataset))


if __name__ == "__main__":
    main()
