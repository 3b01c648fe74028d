"""The multi-seed comparison: every peer under one protocol, resumable, one report per profile."""
import json

import pytest
import torch

from fatsmb_lib.models.baselines import SASRec
from fatsmb_lib.studies.compare import (
    FATSMB_ONLY_SETTINGS,
    PAPER_BASELINES,
    TABLE3_BASELINES,
    paper_orderings,
    quiet_epoch_seconds,
    run_comparison,
)
from fatsmb_lib.training import peers
from fatsmb_lib.training.config import PROFILES
from fatsmb_lib.training.epochs import RECIPES, next_item_batches, next_item_settings
from fatsmb_lib.training.peers import BASELINES, train_baseline
from fatsmb_lib.training.registry import FAMILIES, ModelSpec, encoder_configs
from fatsmb_lib.training.run import open_run
from fatsmb_lib.training.stages import MBAE_SPEC

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


class ToyRecommender(SASRec):
    """A new baseline, as a contributor would add one (here: SASRec under another name)."""


def test_a_new_baseline_is_one_module_plus_its_registration(tmp_path, monkeypatch):
    """Registering a ModelSpec is all it takes: compare trains, checkpoints and reports it."""
    toy = ModelSpec("Toy", "toy", ToyRecommender, encoder_configs, next_item_batches,
                    next_item_settings, paper=True)
    monkeypatch.setattr(peers, "BASELINES", {"Toy": toy})
    monkeypatch.setattr("fatsmb_lib.studies.compare.BASELINES", peers.BASELINES)
    report = run_comparison(dataset="synthetic-tiny", seeds=[0], profile="smoke", device="cpu",
                            data_dir=str(tmp_path / "data"), log=lambda line: None,
                            run_dir=tmp_path / "run", out_dir=tmp_path / "out", **SHORT)
    assert 0 < report["mean_std"]["test"]["Toy"]["NDCG@10"][0] <= 1
    assert len(list((tmp_path / "run").glob("toy-*-seed0.pt"))) == 1


def test_the_paper_s_baselines_are_the_registered_ones_marked_so():
    assert set(PAPER_BASELINES) == set(TABLE3_BASELINES) and len(TABLE3_BASELINES) == 8
    assert set(PAPER_BASELINES) <= set(BASELINES)


def test_every_baseline_names_its_family():
    """Notebook 04's summary groups the baselines by ``ModelSpec.family``."""
    families = {name: spec.family for name, spec in BASELINES.items()}
    assert set(families.values()) == set(FAMILIES), families
    assert families["MBGCN"] == families["MB-GMN"] == "multi-behavior graph"
    assert families["SASRec"] == "single-behavior sequential"
    assert families["BehaviorSASRec"] == "multi-behavior sequential"


def test_mbstr_trains_under_its_own_recipe_whatever_the_profile_s(tmp_path):
    """MB-STR's Cloze windows come from ``profile.mbstr_recipe``: a profile training the other
    Cloze models on every prefix reloads the same MB-STR checkpoint."""
    run = dict(dataset="synthetic-tiny", profile="smoke", device="cpu", run_dir=tmp_path / "run",
               data_dir=str(tmp_path / "data"), **SHORT)
    train_baseline(open_run(**run), "MB-STR")
    first = sorted((tmp_path / "run").glob("mbstr-*.pt"))
    train_baseline(open_run(**run, window_stride=1, last_only_prob=0.5), "MB-STR")
    assert sorted((tmp_path / "run").glob("mbstr-*.pt")) == first
    assert RECIPES[PROFILES["full"].mbstr_recipe]["window_stride"] is None


def test_added_baselines_join_the_committed_report_without_retraining_it(tmp_path, monkeypatch):
    """--add trains only the named baselines and merges them into the report of the same seeds
    and settings: the other rows stay as they were (their checkpoints may be long gone)."""
    kwargs = dict(dataset="synthetic-tiny", seeds=[0], profile="smoke", device="cpu",
                  data_dir=str(tmp_path / "data"), log=lambda line: None,
                  run_dir=tmp_path / "run", out_dir=tmp_path / "out", **SHORT)
    monkeypatch.setattr("fatsmb_lib.studies.compare.BASELINES", {"SASRec": peers.SASREC})
    first = run_comparison(**kwargs)
    committed = next((tmp_path / "out").glob("*.json"))
    committed.write_text(json.dumps({**first, "minutes": 100.0}))   # a long first sitting
    for path in (tmp_path / "run").glob("*.pt"):
        path.unlink()                                      # a fresh checkout: no checkpoints
    monkeypatch.setattr("fatsmb_lib.studies.compare.BASELINES", peers.BASELINES)
    added = run_comparison(**kwargs, add=["GRU4Rec"])
    names = list(added["mean_std"]["test"])
    assert names.index("GRU4Rec") < names.index(next(n for n in names if n.startswith("MBAE")))
    for name, metrics in first["mean_std"]["test"].items():
        assert added["mean_std"]["test"][name] == metrics, name      # kept, not retrained
    assert {p.name.split("-")[0] for p in (tmp_path / "run").glob("*.pt")} == {"gru4rec"}
    assert added["minutes"] >= 100.0                   # the first sitting's minutes are kept
    with pytest.raises(ValueError, match="other settings"):
        run_comparison(**{**kwargs, "d_model": 16}, add=["GRU4Rec"])
    # a model's own setting may change when that model is the one added (a search's choice) ...
    retuned = run_comparison(**{**kwargs, "gru4rec_lr": 1e-2}, add=["GRU4Rec"])
    assert retuned["profile"]["gru4rec_lr"] == 1e-2
    # ... and so may the setting of a model that is not in the report ...
    run_comparison(**{**kwargs, "gru4rec_lr": 1e-2, "pbat_rho": 0.3}, add=["GRU4Rec"])
    # ... but not when another model is added beside the report trained under the old value
    with pytest.raises(ValueError, match="gru4rec_lr"):
        run_comparison(**kwargs, add=["SASRec"])
    with pytest.raises(ValueError, match="has seeds"):
        run_comparison(**{**kwargs, "seeds": [0, 1]}, add=["GRU4Rec"])


def changed(value):
    """A value of the same kind that differs from ``value``."""
    return (not value if isinstance(value, bool) else value + 1 if isinstance(value, (int, float))
            else f"{value}-changed")


@pytest.mark.parametrize("field", sorted(FATSMB_ONLY_SETTINGS))
def test_fatsmb_s_own_settings_shape_no_other_model(tmp_path, field):
    """What ``--ours`` may leave behind: changing one of FatsMB's own settings changes nothing
    that names a baseline's or the MBAE's checkpoint (its configs, batches' settings and
    optimisation), so their committed rows still stand."""
    ctx = open_run("synthetic-tiny", "smoke", "cpu", tmp_path / "run", str(tmp_path / "data"), 0)
    other = ctx.replace(**{field: changed(getattr(ctx.profile, field))})
    for spec in (*BASELINES.values(), MBAE_SPEC):
        def shaping(run):
            run = spec.adjust(run)
            return (repr(spec.configs(run)), spec.data_settings(run),
                    run.profile.train_config(spec.stage, 0))
        assert shaping(other) == shaping(ctx), (spec.name, field)


def test_ours_replaces_the_mbae_and_fatsmb_rows_and_keeps_the_others(tmp_path, monkeypatch):
    """--ours re-trains the MBAE and FatsMB alone (a fresh checkout: no checkpoints) under a
    change of FatsMB's own settings; the baselines' rows stay, and the MBAE, retrained from
    scratch under unchanged settings, reproduces its row."""
    kwargs = dict(dataset="synthetic-tiny", seeds=[0], profile="smoke", device="cpu",
                  data_dir=str(tmp_path / "data"), log=lambda line: None,
                  run_dir=tmp_path / "run", out_dir=tmp_path / "out", **SHORT)
    monkeypatch.setattr("fatsmb_lib.studies.compare.BASELINES", {"SASRec": peers.SASREC})
    first = run_comparison(**kwargs)
    for path in (tmp_path / "run").glob("*.pt"):
        path.unlink()
    again = run_comparison(**kwargs, ours=True, stage3_keeps_stage2=True)
    assert list(again["mean_std"]["test"]) == list(first["mean_std"]["test"])   # same rows, order
    assert again["profile"]["stage3_keeps_stage2"] is True
    for name in ("Pop", "SASRec"):                                  # kept as committed
        assert again["mean_std"]["test"][name] == first["mean_std"]["test"][name], name
    mbae = f"MBAE {PROFILES['smoke'].position}"                     # retrained: its wall time
    assert ({k: v for k, v in again["mean_std"]["test"][mbae].items() if k != "train_seconds"}
            == {k: v for k, v in first["mean_std"]["test"][mbae].items() if k != "train_seconds"})
    assert {p.name.split("-")[0] for p in (tmp_path / "run").glob("*.pt")} == {
        "mbae", "denoiser", "decoder"}
    with pytest.raises(ValueError, match="other settings"):
        run_comparison(**kwargs, ours=True, rho=0.4)      # the MBAE's and BERT4Rec's recipe
    with pytest.raises(ValueError, match="one, then the other"):
        run_comparison(**kwargs, ours=True, add=["GRU4Rec"])


def test_the_quiet_epoch_column_reads_the_cost_study_per_row():
    cost = {"models": {"FatsMB": {"stages": {"stage 1": {"seconds": 60.0},
                                             "stage 2": {"seconds": 1.5},
                                             "stage 3": {"seconds": 4.0}}},
                       "SASRec": {"stages": {"epoch": {"seconds": 2.04}}}}}
    assert quiet_epoch_seconds(cost, "SASRec") == "2.0"
    assert quiet_epoch_seconds(cost, "MBAE barope") == "60.0"                 # stage 1
    assert quiet_epoch_seconds(cost, "FatsMB mcgln x0 (stage 2)") == "61.5"
    assert quiet_epoch_seconds(cost, "FatsMB mcgln x0") == "65.5"
    assert quiet_epoch_seconds(cost, "MBGCN") == quiet_epoch_seconds(cost, "Pop") == "—"


def test_the_papers_orderings_are_those_it_shows_on_every_dataset_and_are_judged_here():
    test = {"BERT4Rec": {"NDCG@10": (0.056, 0.003)}, "MB-STR": {"NDCG@10": (0.037, 0.002)},
            "DiffuRec": {"NDCG@10": (0.057, 0.003)}, "SASRec": {"NDCG@10": (0.065, 0.003)}}
    rows = {row["paper"]: row["here"] for row in paper_orderings(test)}
    # Yelp has DiffuRec above MB-STR, Retail and IJCAI below: not an ordering of the paper's
    assert rows == {"DiffuRec > BERT4Rec": "tie", "MB-STR > BERT4Rec": "reversed"}
    test["MB-STR"] = {"NDCG@10": (0.070, 0.002)}
    assert {r["paper"]: r["here"] for r in paper_orderings(test)}["MB-STR > BERT4Rec"] == "holds"
