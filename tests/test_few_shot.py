"""Figure 7's few-shot study: the sparsest behavior is thinned share by share, every model is
trained on what is left, both ways of scoring are recorded, and the ledger resumes."""
import json

from fatsmb_lib.studies import few_shot
from fatsmb_lib.studies.few_shot import MODELS, run_few_shot, run_share, sparsest_behavior
from fatsmb_lib.training.run import open_run

SHORT = dict(stage1_epochs=1, baseline_epochs=2, stage2_epochs=1, stage3_epochs=1, min_epochs=1,
             max_users=150)
MAP = "synthetic-map+sparse_behavior=0+sparse_behavior_share=0.05"


def test_the_sparsest_behavior_is_the_one_with_fewest_training_interactions(tmp_path):
    ctx = open_run(MAP, "smoke", "cpu", tmp_path / "run", tmp_path / "data", 0, **SHORT)
    assert sparsest_behavior(ctx.data) == "neg"
    rare_pos = "synthetic-map+sparse_behavior=2+sparse_behavior_share=0.01+p_repeat=0.0"
    ctx = open_run(rare_pos, "smoke", "cpu", tmp_path / "run2", tmp_path / "data", 0, **SHORT)
    assert sparsest_behavior(ctx.data) == "pos"


def test_each_share_trains_on_thinned_data_and_the_ledger_resumes(tmp_path, monkeypatch):
    seen = []

    def fake_share(ctx, behavior, log=print):
        neg = (ctx.data.split().train_behaviors == 1).sum()
        seen.append((ctx.seed, int(neg), behavior))
        return {name: {"specific": 0.1, "fixed": 0.05, "valid": 0.1, "seconds": 1.0}
                for name in MODELS}

    monkeypatch.setattr(few_shot, "run_share", fake_share)
    kwargs = dict(dataset=MAP, profile="smoke", shares=(0.0, 1.0), device="cpu",
                  run_dir=tmp_path / "run", out_dir=tmp_path / "out", data_dir=tmp_path / "data",
                  log=lambda line: None, **SHORT)
    run_few_shot(seeds=[0], **kwargs)
    (_, kept_all, behavior), (_, kept_none, _) = seen
    assert behavior == "neg" and kept_all > 0 and kept_none < kept_all / 10   # zero-shot
    run_few_shot(seeds=[0, 1, 2], **kwargs)
    assert len(seen) == 6                                  # seed 0 was not run again
    saved = json.loads((tmp_path / "out" / "few_shot.json").read_text())
    assert saved["meta"]["behavior"] == "neg" and sorted(saved["cells"]) == ["share=0.0",
                                                                               "share=1.0"]
    table = (tmp_path / "out" / "few_shot.md").read_text()
    assert "0.0500 ± 0.0000" in table and (tmp_path / "out" / "few_shot.png").is_file()
    run_few_shot(seeds=[0], **{**kwargs, "shares": (0.5,)})    # one lane's shares
    assert "| 0.0 | 0.5 | 1.0 |" in (tmp_path / "out" / "few_shot.md").read_text()


def test_a_share_trains_every_model_and_scores_both_ways(tmp_path):
    ctx = open_run(MAP, "smoke", "cpu", tmp_path / "run", tmp_path / "data", 0, **SHORT)
    row = run_share(ctx, "neg", log=lambda line: None)
    assert list(row) == list(MODELS)
    for scores in row.values():
        assert 0 <= scores["fixed"] <= 1 and 0 <= scores["specific"] <= 1


def test_share_zero_trains_in_the_profile_s_own_folder_so_its_checkpoints_are_reused(tmp_path):
    from fatsmb_lib.studies.few_shot import share_run_dir
    assert share_run_dir(None, "ml100k", "default", 0.0) == ""      # open_run's runs/ml100k-default
    assert share_run_dir(None, "ml100k", "default", 0.4).parts[-2:] == ("few-shot-ml100k-default",
                                                                         "share-0.4")
    assert share_run_dir(tmp_path, "ml100k", "default", 0.0) == tmp_path / "share-0.0"
