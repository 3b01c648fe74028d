"""The stage-3 and sampler study: stage 3 that keeps stage 2's decoder cannot validate worse."""
import json

from fatsmb_lib.studies.sampling import run_study

SHORT = dict(stage1_epochs=2, stage2_epochs=2, stage3_epochs=2, min_epochs=1)


def test_study_rows_and_the_keep_rule(tmp_path):
    report = run_study("synthetic-tiny", [0], "smoke", "cpu", tmp_path / "data",
                       log=lambda line: None, run_dir=tmp_path / "run", out_dir=tmp_path, **SHORT)
    rows = report["per_seed"][0]
    assert list(rows) == ["stage 2", "stage 3, keeps stage 2", "stage 3", "K = 4, mean of scores",
                          "K = 16, mean of scores", "K = 4, mean of latents",
                          "K = 16, mean of latents"]
    assert rows["stage 3, keeps stage 2"]["valid"] >= rows["stage 2"]["valid"]
    if rows["stage 3, keeps stage 2"]["best_epoch"] == 0:               # it kept stage 2's
        assert rows["stage 3, keeps stage 2"]["test"] == rows["stage 2"]["test"]
    assert all(r["ms_per_user"] > 0 for r in rows.values())
    saved = json.loads((tmp_path / "sampling_study.json").read_text())
    assert saved["seeds"] == [0] and "K = 16, mean of latents" in saved["mean_std"]
    assert "| stage 2 |" in (tmp_path / "sampling_study.md").read_text()
