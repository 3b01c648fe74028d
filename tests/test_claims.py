"""The claims ledger: each judge reads the reports and gives the verdict the tie rule implies;
a missing report leaves a claim "not measured yet", never a guess."""
import json

import pytest

from fatsmb_lib.studies import claims
from fatsmb_lib.studies.claims import (
    CANNOT,
    CLAIMS,
    HOLD,
    NOT_HOLD,
    PENDING,
    VERDICTS,
    best_of,
    component,
    entropy_asymmetry,
    findings,
    ledger_markdown,
    length_scaling,
    ordering,
    sweep_trend,
)
from fatsmb_lib.studies.sweeps import SWEEPS, cell


def _comparison(tmp_path, rows, name="comparison.json", split="test"):
    report = {"profile": {"name": "full"}, "seeds": [0, 1, 2],
              "mean_std": {split: {n: {"NDCG@10": list(v), "NDCG@20": list(v)}
                                   for n, v in rows.items()}}}
    (tmp_path / name).write_text(json.dumps(report))


@pytest.mark.parametrize("a, b, expect, says", [
    ((0.30, 0.01), (0.20, 0.01), HOLD, ""),
    ((0.20, 0.05), (0.18, 0.01), NOT_HOLD, "a tie"),
    ((0.10, 0.01), (0.20, 0.01), NOT_HOLD, "B ahead"),
])
def test_an_ordering_holds_only_beyond_one_seed_std(tmp_path, a, b, expect, says):
    _comparison(tmp_path, {"A": a, "B": b})
    found = ordering("comparison.json", "A", "B")(tmp_path)
    assert found.verdict == expect and says in found.measured
    assert f"{a[0]:.4f} ± {a[1]:.4f}" in found.measured and "profile `full`" in found.measured


def test_a_missing_report_or_row_is_not_measured_yet(tmp_path):
    assert ordering("comparison.json", "A", "B")(tmp_path).verdict == PENDING
    _comparison(tmp_path, {"A": (0.3, 0.01)})
    assert ordering("comparison.json", "A", "B")(tmp_path).verdict == PENDING


def test_fatsmb_is_judged_against_the_best_baseline_of_the_set_asked_for(tmp_path):
    _comparison(tmp_path, {"SASRec": (0.066, 0.002), "BERT4Rec": (0.050, 0.002),
                           "MB-STR": (0.030, 0.002), "MBAE barope": (0.07, 0.001),
                           "FatsMB mcgln x0 (stage 2)": (0.09, 0.001),
                           "FatsMB mcgln x0": (0.060, 0.002)})
    everyone = best_of("comparison.json", paper_only=False)(tmp_path)
    paper = best_of("comparison.json", paper_only=True)(tmp_path)
    assert everyone.verdict == NOT_HOLD and "vs SASRec" in everyone.measured
    assert paper.verdict == HOLD and "vs BERT4Rec" in paper.measured      # MBAE: not a baseline
    assert "FatsMB mcgln x0 0.0600" in paper.measured                     # not the stage-2 row


def test_the_entropy_asymmetry_reads_table_1_s_quantities(tmp_path):
    (tmp_path / "entropy.json").write_text(json.dumps({"H(B|I)": 0.9, "H(I|B)": 6.6}))
    assert entropy_asymmetry(tmp_path).verdict == HOLD
    (tmp_path / "entropy.json").write_text(json.dumps({"H(B|I)": 3.0, "H(I|B)": 6.6}))
    assert entropy_asymmetry(tmp_path).verdict == NOT_HOLD


def _sweeps(tmp_path, field, per_value):
    cells = {cell(field, v): {str(k): {"test": {"NDCG@10": x}} for k, x in enumerate(scores)}
             for v, scores in per_value.items()}
    (tmp_path / "sweeps.json").write_text(json.dumps({"meta": {"profile": "default"},
                                                      "cells": cells}))


def test_a_sweep_trend_needs_three_seeds_everywhere_and_a_gap_at_the_ends(tmp_path):
    spread = (-0.001, 0.0, 0.001)
    falling = {v: [0.07 - 0.004 * k + e for e in spread] for k, v in enumerate(SWEEPS["rho"][0])}
    _sweeps(tmp_path, "rho", {**falling, 0.8: [0.058]})
    assert sweep_trend("rho", rises=False)(tmp_path).verdict == PENDING   # ρ 0.8: one seed
    _sweeps(tmp_path, "rho", falling)
    found = sweep_trend("rho", rises=False)(tmp_path)
    assert found.verdict == HOLD and "ρ 0.8: 0.0580" in found.measured
    assert sweep_trend("rho", rises=True)(tmp_path).verdict == NOT_HOLD
    _sweeps(tmp_path, "rho", {**falling, 0.4: [0.08 + e for e in spread]})
    assert sweep_trend("rho", rises=False)(tmp_path).verdict == NOT_HOLD  # ρ 0.4 beats 0.2
    flat = {v: [0.07 + e for e in spread] for v in SWEEPS["T"][0]}
    _sweeps(tmp_path, "T", flat)
    assert sweep_trend("T", rises=True)(tmp_path).verdict == NOT_HOLD     # a tie


def test_table_4_is_judged_from_the_sweep_once_it_has_three_seeds(tmp_path):
    def rows(x):
        return {str(k): {"test": {"NDCG@20": x + e}} for k, e in enumerate((-0.001, 0, 0.001))}

    fallback = ordering("comparison-default.json", "MBAE barope", "MBAE ape", "NDCG@20")
    judge = component("position", "barope", "ape", fallback)
    _comparison(tmp_path, {"MBAE barope": (0.05, 0.004), "MBAE ape": (0.051, 0.005)},
                name="comparison-default.json")
    cells = {cell("position", "barope"): rows(0.06)}
    (tmp_path / "sweeps.json").write_text(json.dumps({"meta": {"profile": "default"},
                                                      "cells": cells}))
    assert "comparison-default.json" in judge(tmp_path).measured       # APE not swept yet
    cells[cell("position", "ape")] = rows(0.05)
    (tmp_path / "sweeps.json").write_text(json.dumps({"meta": {"profile": "default"},
                                                      "cells": cells}))
    found = judge(tmp_path)
    assert found.verdict == HOLD and "barope 0.0600 ± 0.0010 vs ape 0.0500" in found.measured


def test_every_claim_is_judged_on_an_empty_folder_without_guessing(tmp_path):
    judged = findings(tmp_path)
    assert len(judged) == len(CLAIMS)
    assert {finding.verdict for _, finding in judged} <= {PENDING, CANNOT}
    text = ledger_markdown(judged, "nowhere")
    counts = {v: int(text.split(f"{v}: ")[1].split(";")[0].split("\n")[0]) for v in VERDICTS}
    assert sum(counts.values()) == len(CLAIMS) and text.count("\n| ") == len(CLAIMS) + 1


def test_the_ledger_is_written_where_asked(tmp_path, monkeypatch):
    monkeypatch.setattr(claims, "project_root", lambda: tmp_path)
    claims.write_ledger("ml100k", out=tmp_path / "claims.md")
    text = (tmp_path / "claims.md").read_text()
    assert text.startswith("# The paper's claims, checked on ml100k")


def _diversity(tmp_path, ild):
    rows = {name: {"intra-list diversity": list(v)} for name, v in ild.items()}
    (tmp_path / "diversity.json").write_text(json.dumps({
        "profile": "default", "seed": 0, "profile_omega": 1.0, "uncertainty": "bootstrap",
        "models": rows}))


def test_the_diversity_claims_need_intervals_apart(tmp_path):
    from fatsmb_lib.studies.claims import generation_diversity, guidance_narrows

    assert generation_diversity(tmp_path).verdict == PENDING
    _diversity(tmp_path, {"SASRec": (0.50, 0.48, 0.52), "MBAE": (0.55, 0.53, 0.57),
                          "FatsMB ω=0": (0.70, 0.68, 0.72), "FatsMB ω=1": (0.60, 0.58, 0.62),
                          "FatsMB ω=5": (0.40, 0.38, 0.42)})
    assert generation_diversity(tmp_path).verdict == HOLD        # ω = 1 above every scorer
    assert guidance_narrows(tmp_path).verdict == HOLD            # ω 5 below ω 0
    _diversity(tmp_path, {"SASRec": (0.50, 0.48, 0.59), "FatsMB ω=0": (0.60, 0.58, 0.62),
                          "FatsMB ω=1": (0.60, 0.58, 0.62), "FatsMB ω=5": (0.59, 0.57, 0.61)})
    assert generation_diversity(tmp_path).verdict == NOT_HOLD    # intervals overlap
    assert guidance_narrows(tmp_path).verdict == NOT_HOLD


def _few_shot_ledger(tmp_path, curves, seeds=3):
    """curves: {model: {share: fixed NDCG}}; specific = fixed + 0.1; spread ±0.001 over seeds."""
    shares = sorted(next(iter(curves.values())))
    cells = {f"share={s}": {str(seed): {name: {"fixed": c[s] + 0.001 * (seed - 1),
                                               "specific": c[s] + 0.1 + 0.001 * (seed - 1)}
                                        for name, c in curves.items()}
                            for seed in range(seeds)} for s in shares}
    (tmp_path / "few_shot.json").write_text(json.dumps(
        {"meta": {"behavior": "neg", "profile": "default", "dataset": "ml100k"}, "cells": cells}))


def test_the_few_shot_claims_follow_the_paper_s_three_statements(tmp_path):
    from fatsmb_lib.studies.claims import few_shot

    shares = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    assert few_shot("ahead")(tmp_path).verdict == PENDING
    _few_shot_ledger(tmp_path, {"FatsMB": dict(zip(shares, (0.10, 0.1002, 0.09, 0.08, 0.07, 0.06))),
                                "MB-STR": dict(zip(shares, (0.08, 0.06, 0.05, 0.04, 0.02, 0.01)))})
    for kind in ("ahead", "mild", "zero"):
        assert few_shot(kind)(tmp_path).verdict == HOLD, kind
    _few_shot_ledger(tmp_path, {"FatsMB": dict(zip(shares, (0.10, 0.08, 0.07, 0.06, 0.05, 0.01))),
                                "MB-STR": dict(zip(shares, (0.08, 0.079, 0.07, 0.06, 0.05, 0.04)))})
    for kind in ("ahead", "mild", "zero"):
        assert few_shot(kind)(tmp_path).verdict == NOT_HOLD, kind
    _few_shot_ledger(tmp_path, {"FatsMB": {0.0: 0.1, 1.0: 0.05}, "MB-STR": {0.0: 0.1, 1.0: 0.01}})
    assert few_shot("zero")(tmp_path).verdict == HOLD
    assert few_shot("mild")(tmp_path).verdict == PENDING           # share 0.2 not run
    assert few_shot("ahead")(tmp_path).verdict == NOT_HOLD          # a tie at share 0 refutes it
    _few_shot_ledger(tmp_path, {"FatsMB": {0.0: 0.1, 1.0: 0.05}, "MB-STR": {0.0: 0.05, 1.0: 0.01}})
    assert few_shot("ahead")(tmp_path).verdict == PENDING            # ahead so far, 4 shares to go


def test_the_cost_claim_compares_an_epoch_and_the_peak_memory(tmp_path):
    from fatsmb_lib.studies.claims import training_cost

    def write(fatsmb_seconds, fatsmb_mib):
        models = {"FatsMB": {"stages": {"stage 1": {"seconds": fatsmb_seconds}},
                             "peak_mib": fatsmb_mib},
                  **{n: {"stages": {"epoch": {"seconds": t}}, "peak_mib": m}
                     for n, t, m in (("A", 2.0, 500), ("B", 8.0, 900), ("C", 12.0, 2000))}}
        (tmp_path / "cost.json").write_text(json.dumps(
            {"profile": "full", "device": "cpu", "models": models}))

    assert training_cost(tmp_path).verdict == PENDING
    write(10.0, 800)
    assert training_cost(tmp_path).verdict == HOLD           # within 2× the median (8 s)
    write(65.0, 800)
    assert training_cost(tmp_path).verdict == NOT_HOLD
    write(10.0, 3000)
    assert training_cost(tmp_path).verdict == NOT_HOLD       # memory outside the range


def test_the_length_claim_is_an_upper_bound_on_the_growth_per_row(tmp_path):
    def write(ms_per_row):
        rows = {str(n): {"seconds": ms * 1e-3 * 1000, "rows": 1000} for n, ms in ms_per_row.items()}
        (tmp_path / "cost.json").write_text(json.dumps(
            {"scaling": {"device": "cpu", "against_length": rows}}))

    assert length_scaling(tmp_path).verdict == PENDING
    write({25: 1.0, 50: 1.6, 100: 3.0, 200: 7.0})            # between linear and quadratic
    found = length_scaling(tmp_path)
    assert found.verdict == HOLD and "L 200: 7.00 ms" in found.measured
    write({25: 1.0, 50: 8.0, 100: 64.0, 200: 512.0})         # cubic
    assert length_scaling(tmp_path).verdict == NOT_HOLD
