"""The multi-seed comparison: every peer under one protocol, resumable, one report per profile."""
import json

import torch

from fatsmb_lib.studies.compare import BASELINES, report_name, run_comparison
from fatsmb_lib.training.config import HEADLINE_PROFILE, PROFILES, RECIPES
from fatsmb_lib.training.run import open_run
from fatsmb_lib.training.stages import train_mbstr

SHORT = dict(stage1_epochs=2, baseline_epochs=3, stage2_epochs=1, stage3_epochs=1, min_epochs=1)


def test_comparison_trains_every_model_and_resumes(tmp_path):
    kwargs = dict(dataset="synthetic-tiny", seeds=[0], profile="smoke", device="cpu",
                  data_dir=str(tmp_path / "data"), log=lambda line: None,
                  run_dir=tmp_path / "run", out_dir=tmp_path / "out", **SHORT)
    report = run_comparison(**kwargs)
    names = list(report["mean_std"]["test"])
    smoke = PROFILES["smoke"]
    fatsmb = f"FatsMB {smoke.denoiser} {smoke.prediction}"
    assert names == ["Pop", *BASELINES, f"MBAE {smoke.position}", f"{fatsmb} (stage 2)", fatsmb]
    saved = json.loads((tmp_path / "out" / "comparison-smoke.json").read_text())
    assert saved["profile"]["stage1_epochs"] == 2 and saved["seeds"] == [0]
    assert all(m["train_seconds"] > 0 for name, m in saved["per_seed"][0]["test"].items()
               if name != "Pop")
    checkpoints = sorted((tmp_path / "run").glob("*.pt"))
    cloze_budget = torch.load(next((tmp_path / "run").glob("bert4rec-*.pt")), weights_only=False)
    assert cloze_budget["history"]["epochs"][-1] == 2     # BERT4Rec shares the MBAE's budget
    again = run_comparison(**kwargs)                                  # reloaded, not retrained
    assert sorted((tmp_path / "run").glob("*.pt")) == checkpoints
    assert again["mean_std"]["test"][fatsmb] == report["mean_std"]["test"][fatsmb]


def test_the_headline_report_keeps_the_plain_name():
    assert report_name(HEADLINE_PROFILE) == "comparison"
    assert report_name("default") == "comparison-default"


def test_mbstr_trains_under_its_own_recipe_whatever_the_profile_s(tmp_path):
    """MB-STR's Cloze windows come from ``profile.mbstr_recipe``: a profile training the other
    Cloze models on every prefix reloads the same MB-STR checkpoint."""
    run = dict(dataset="synthetic-tiny", profile="smoke", device="cpu", run_dir=tmp_path / "run",
               data_dir=str(tmp_path / "data"), **SHORT)
    train_mbstr(open_run(**run))
    first = sorted((tmp_path / "run").glob("mbstr-*.pt"))
    train_mbstr(open_run(**run, window_stride=1, last_only_prob=0.5))
    assert sorted((tmp_path / "run").glob("mbstr-*.pt")) == first
    assert RECIPES[PROFILES["full"].mbstr_recipe]["window_stride"] is None
