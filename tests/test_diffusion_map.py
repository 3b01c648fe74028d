"""The map of where the diffusion pays: its cells are datasets named by their knobs, it trains
the four models of a cell under one protocol, resumes from its ledger, and judges FatsMB
against its MBAE by the one-std rule only where a cell has enough seeds."""
import json

import pytest

from fatsmb_lib.data.datasets import DataError, synthetic_config, synthetic_variant
from fatsmb_lib.data.synthetic import PRESETS
from fatsmb_lib.studies import diffusion_map
from fatsmb_lib.studies.diffusion_map import MODELS, cell_dataset, run_cell, run_map, summarize_cell
from fatsmb_lib.training.run import open_run

SHORT = dict(stage1_epochs=1, baseline_epochs=2, stage2_epochs=1, stage3_epochs=1, min_epochs=1,
             max_users=150)


def test_a_cell_is_the_map_preset_with_its_two_knobs():
    config = synthetic_config(cell_dataset(0.5, 0.03))
    assert (config.behavior_influence, config.sparse_behavior_share, config.sparse_behavior) == (
        0.5, 0.03, 0)
    assert config.behavior_names[0] == diffusion_map.SPARSE
    natural = synthetic_config(cell_dataset(0.0, None))
    assert natural.sparse_behavior_share is None and natural.n_users == PRESETS["map"].n_users


@pytest.mark.parametrize("name, message", [
    ("synthetic-nope+zipf=1", "unknown synthetic preset 'nope'"),
    ("synthetic-map+colour=1", "'colour=1' is not <field>=<value>"),
    ("synthetic-map+n_users=many", "n_users='many' is not an integer"),
    ("synthetic-map+behavior_names=1", "behavior_names is not a number"),
    ("synthetic-map+behavior_influence=2", "behavior_influence=2.0 must lie in [0, 1]"),
])
def test_a_wrong_variant_name_says_which_part_is_wrong(name, message):
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")
                       .replace("(", r"\(").replace(")", r"\)")):
        synthetic_config(name)


def test_variant_names_round_trip_and_change_only_their_fields():
    name = synthetic_variant("tiny", zipf=1.2, min_len=12)
    assert name == "synthetic-tiny+zipf=1.2+min_len=12"
    config, base = synthetic_config(name), PRESETS["tiny"]
    assert (config.zipf, config.min_len) == (1.2, 12)
    assert {k: v for k, v in vars(config).items() if k not in ("zipf", "min_len")} == {
        k: v for k, v in vars(base).items() if k not in ("zipf", "min_len")}


def _ledger_row(fatsmb, mbae):
    other = {"valid": 0.1, "test": 0.1, "test_sparse": 0.1, "seconds": 1.0}
    return {"MBAE": {**other, "test": mbae}, "FatsMB": {**other, "test": fatsmb},
            "SASRec": other, "BehaviorSASRec": other}


def test_a_cell_is_judged_only_with_three_seeds_and_by_the_one_std_rule():
    two = {"0": _ledger_row(0.30, 0.20), "1": _ledger_row(0.31, 0.21)}
    assert summarize_cell(two)["verdict"] is None
    ahead = {**two, "2": _ledger_row(0.32, 0.22)}            # +0.10, std 0.01: holds
    cell = summarize_cell(ahead)
    assert cell["verdict"] == "holds" and cell["gain"] == pytest.approx(100 * (0.31 / 0.21 - 1))
    noisy = {"0": _ledger_row(0.30, 0.10), "1": _ledger_row(0.10, 0.30),
             "2": _ledger_row(0.22, 0.20)}
    assert summarize_cell(noisy)["verdict"] == "ties"       # gap 0.007 inside std ~0.1


def test_the_map_resumes_from_its_ledger_and_draws_every_cell(tmp_path, monkeypatch):
    calls = []

    def fake_cell(ctx, log=print):
        calls.append((ctx.profile.dataset, ctx.seed))
        return _ledger_row(0.2 + 0.01 * ctx.seed, 0.1)

    monkeypatch.setattr(diffusion_map, "run_cell", fake_cell)
    kwargs = dict(profile="smoke", influences=(0.0, 1.0), shares=(None,), device="cpu",
                  run_dir=tmp_path / "run", out_dir=tmp_path / "out", data_dir=tmp_path / "data",
                  log=lambda line: None, **SHORT)
    run_map([0, 1], **kwargs)
    assert len(calls) == 4
    ledger = run_map([0, 1, 2], **kwargs)                     # only seed 2 is new
    assert len(calls) == 6 and sorted(ledger.cells) == ["influence=0.0 share=None",
                                                         "influence=1.0 share=None"]
    saved = json.loads((tmp_path / "out" / "diffusion_map.json").read_text())
    assert saved["cells"] == ledger.cells and (tmp_path / "out" / "diffusion_map.png").is_file()
    assert "holds" in (tmp_path / "out" / "diffusion_map.md").read_text()
    with pytest.raises(ValueError, match="profile='smoke' \\(asked: 'default'\\)"):
        run_map([0], **{**kwargs, "profile": "default"})


def test_the_report_covers_every_cell_in_the_ledger_whoever_wrote_it(tmp_path, monkeypatch):
    """Two processes, each given part of the grid: the report the last one writes still has
    the other's cells (it used to show only its own)."""
    monkeypatch.setattr(diffusion_map, "run_cell",
                        lambda ctx, log=print: _ledger_row(0.2 + 0.01 * ctx.seed, 0.1))
    kwargs = dict(profile="smoke", device="cpu", run_dir=tmp_path / "run",
                  out_dir=tmp_path / "out", data_dir=tmp_path / "data", log=lambda line: None,
                  **SHORT)
    run_map([0, 1, 2], influences=(1.0,), shares=(None,), **kwargs)
    ledger = run_map([0, 1, 2], influences=(0.25,), shares=(0.03,), **kwargs)
    report = (tmp_path / "out" / "diffusion_map.md").read_text()
    assert "λ 1.0, neg share natural" in report and "λ 0.25, neg share 0.03" in report
    assert diffusion_map.ledger_grid(ledger) == ([0.25, 1.0], [None, 0.03])
    for knobs in ((0.25, 0.03), (1.0, None)):
        assert diffusion_map.cell_knobs(diffusion_map.cell_key(*knobs)) == knobs


def test_a_cell_trains_the_four_models_and_scores_the_sparse_behavior(tmp_path):
    ctx = open_run(cell_dataset(1.0, 0.1), "smoke", "cpu", tmp_path / "run", tmp_path / "data",
                   0, **SHORT)
    row = run_cell(ctx, log=lambda line: None)
    assert list(row) == list(MODELS)
    for scores in row.values():
        assert 0 <= scores["test"] <= 1 and scores["seconds"] > 0
        assert scores["test_sparse"] is not None          # some test users target neg
