"""The validation search for Table 3's added baselines: each candidate's value reaches its
model, only validation is read, a finished candidate is never trained again, and the headline
profile holds the committed ledger's winners."""
import json

import pytest

from fatsmb_lib.studies import peer_search
from fatsmb_lib.studies.ledger import Ledger
from fatsmb_lib.studies.peer_search import SEARCH, cell, run_search, winners
from fatsmb_lib.support.paths import project_root
from fatsmb_lib.training.config import HEADLINE_PROFILE, get_profile
from fatsmb_lib.training.peers import PBAT_SPEC
from fatsmb_lib.training.run import open_run

SHORT = dict(baseline_epochs=1, min_epochs=1, max_users=120)


def test_each_candidate_trains_once_and_only_validation_is_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(peer_search, "SEARCH", {"MBGCN": ("mbgcn_lambda", (0.1, 1.0))})
    seen = []
    real_train = peer_search.train

    def spy(spec, ctx):
        seen.append(ctx.profile.mbgcn_lambda)
        return real_train(spec, ctx)

    monkeypatch.setattr(peer_search, "train", spy)
    kwargs = dict(dataset="synthetic-tiny", profile="smoke", device="cpu",
                  out_dir=tmp_path / "out", run_dir=tmp_path / "run", data_dir=tmp_path / "data",
                  log=lambda line: None, **SHORT)
    ledger = run_search(**kwargs)
    assert seen == [0.1, 1.0]
    rows = [ledger.runs(peer_search.cell("MBGCN", v))["0"] for v in (0.1, 1.0)]
    assert all(set(row["valid"]) == {"Recall@10", "NDCG@10", "Recall@20", "NDCG@20"}
               and "test" not in row for row in rows)
    best = max((0.1, 1.0), key=lambda v: ledger.runs(peer_search.cell("MBGCN", v))["0"]
               ["valid"]["NDCG@10"])
    assert peer_search.winners(ledger) == {"MBGCN": ("mbgcn_lambda", best)}
    report = (tmp_path / "out" / "peer_search.md").read_text()
    winner_line = next(line for line in report.splitlines() if f"mbgcn_lambda={best}" in line)
    assert "best" in winner_line
    run_search(**kwargs)                                  # resumes: nothing trains again
    assert seen == [0.1, 1.0]


def test_pbats_mask_probability_reaches_its_batches(tmp_path):
    ctx = open_run("synthetic-tiny", "smoke", "cpu", tmp_path / "run", tmp_path / "data", 0,
                   pbat_rho=0.35)
    assert PBAT_SPEC.data_settings(PBAT_SPEC.adjust(ctx))["rho"] == 0.35


def test_a_model_is_chosen_only_when_all_its_candidates_ran(tmp_path):
    ledger = Ledger(tmp_path / "s.json")
    field, values = SEARCH["M-GPT"]
    for value, score in zip(values[:-1], (0.02, 0.03)):
        ledger.record(cell("M-GPT", value), 0, {"valid": {"NDCG@10": score}})
    assert "M-GPT" not in winners(ledger)
    ledger.record(cell("M-GPT", values[-1]), 0, {"valid": {"NDCG@10": 0.025}})
    assert winners(ledger)["M-GPT"] == (field, values[1])


def test_the_headline_profile_holds_the_committed_searchs_winners():
    path = project_root() / "reports" / "ml100k" / "peer_search.json"
    if not path.is_file():
        pytest.skip("no committed search yet")
    meta = json.loads(path.read_text())["meta"]
    assert meta["profile"] == HEADLINE_PROFILE and not meta["overrides"]
    profile = get_profile(HEADLINE_PROFILE, "ml100k")
    for model, (field, value) in winners(Ledger(path)).items():
        assert getattr(profile, field) == value, (
            f"the search chose {field}={value} for {model}; put it in the `full` profile")
