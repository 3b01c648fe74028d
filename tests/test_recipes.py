"""The recipe study: one change per step, validation only, resumable, a report per step."""
import json

from fatsmb_lib.config import RECIPES
from fatsmb_lib.recipes import run_study, study_steps


def test_each_study_step_changes_one_thing_from_the_one_before():
    steps = study_steps()
    assert steps[0][1] == RECIPES["paper"]
    for (_, before), (_, after) in zip(steps, steps[1:]):
        changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        changed -= {"stage1_epochs"}  # the budget follows the rows an epoch holds
        assert len(changed) == 1, changed


def test_study_reports_validation_only_and_resumes(tmp_path):
    steps = [("paper recipe", {**RECIPES["paper"], "stage1_epochs": 2, "baseline_epochs": 2}),
             ("+ every prefix", {**RECIPES["paper"], "window_stride": 1, "stage1_epochs": 2,
                                 "baseline_epochs": 2})]
    kwargs = dict(dataset="synthetic-tiny", seeds=[0], profile="smoke", models=("mbae",),
                  device="cpu", data_dir=str(tmp_path / "data"), log=lambda line: None,
                  steps=steps, run_dir=tmp_path / "run", out_dir=tmp_path / "out")
    report = run_study(**kwargs)
    saved = json.loads((tmp_path / "out" / "recipe_study.json").read_text())
    every = saved["steps"]["+ every prefix"]["mbae"]["per_seed"][0]
    paper = saved["steps"]["paper recipe"]["mbae"]["per_seed"][0]
    assert every["rows_seen"] > 5 * paper["rows_seen"]           # overlapping windows
    assert every["curve"][0][-1] == every["rows_seen"] and 0 < every["best"] <= 1
    assert "test" not in json.dumps(saved).lower()               # validation only
    checkpoints = set((tmp_path / "run").glob("*.pt"))
    assert run_study(**kwargs)["steps"] == report["steps"]       # reloaded, not retrained
    assert set((tmp_path / "run").glob("*.pt")) == checkpoints
