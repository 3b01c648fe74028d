"""The recipe study: one change per step, validation only, resumable, a report per step."""
import json

import pytest

from fatsmb_lib.studies import recipes
from fatsmb_lib.studies.recipes import Step, run_study, study_steps
from fatsmb_lib.training.config import PROFILES
from fatsmb_lib.training.epochs import RECIPES


def test_each_study_step_changes_one_thing_from_its_parent():
    steps = {step.name: step for step in study_steps()}
    first = study_steps()[0]
    assert first.overrides == RECIPES["paper"] and first.parent is None
    for step in list(steps.values())[1:]:
        before, after = steps[step.parent].overrides, step.overrides
        changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        if changed != {"stage1_epochs"}:
            changed -= {"stage1_epochs"}  # the budget follows the rows an epoch holds
        assert len(changed) == 1, (step.name, changed)


def test_the_full_profile_trains_the_study_s_last_main_step():
    """``full``'s stage 1 is the default profile under the every-prefix step, so the study and
    the full comparison share checkpoints (same settings, same digest)."""
    last = next(s for s in study_steps() if s.name == "+ a window ending at every item")
    default, full = PROFILES["default"].replace(**last.overrides), PROFILES["full"]
    stage1 = ("window_stride", "last_only_prob", "rho", "sigma", "batch_size", "dropout", "lr")
    assert all(getattr(default, f) == getattr(full, f) for f in stage1)
    assert default.train_config("stage1", 0) == full.train_config("stage1", 0)


def test_study_reports_validation_only_and_resumes(tmp_path):
    steps = [Step("paper recipe", {**RECIPES["paper"], "stage1_epochs": 2}),
             Step("+ every prefix", {**RECIPES["paper"], "window_stride": 1, "stage1_epochs": 2},
                  "paper recipe")]
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


def test_a_step_s_none_settings_are_applied(tmp_path, monkeypatch):
    """The paper's windows are ``window_stride=None``; a step must set it even where the base
    profile has another stride (``default`` trains a window at every item)."""
    seen = []
    monkeypatch.setattr(recipes, "run_step", lambda ctx, model: seen.append(ctx.profile) or {
        "best": 0.0, "best_epoch": 1, "epochs": 1, "rows_seen": 0, "seconds": 0.0, "curve": []})
    assert PROFILES["default"].window_stride == 1
    run_study("synthetic-tiny", [0], "default", ("mbae",), "cpu", str(tmp_path / "data"),
              log=lambda line: None, steps=[Step("paper recipe", RECIPES["paper"])],
              run_dir=tmp_path / "run", out_dir=tmp_path / "out")
    assert seen[0].window_stride is None and seen[0].stage1_epochs == RECIPES["paper"]["stage1_epochs"]


def test_the_report_is_a_ledger_a_fresh_checkout_resumes_from(tmp_path, monkeypatch):
    """Finished runs are read back from the report, with no checkpoint; ``only`` trains some
    steps and keeps the others' rows; a changed step's settings are trained again."""
    trained = []

    def fake_run_step(ctx, model):
        trained.append((ctx.seed, ctx.profile.rho))
        return {"best": 0.01 * ctx.seed + ctx.profile.rho, "best_epoch": 1, "epochs": 1,
                "rows_seen": 10, "seconds": 1.0, "curve": [[10], [0.1]]}

    monkeypatch.setattr(recipes, "run_step", fake_run_step)
    steps = [Step("root", {"rho": 0.2}), Step("root, ρ 0.4", {"rho": 0.4}, "root")]
    kwargs = dict(dataset="synthetic-tiny", profile="smoke", models=("mbae",), device="cpu",
                  data_dir=str(tmp_path / "data"), log=lambda line: None, steps=steps,
                  run_dir=tmp_path / "run", out_dir=tmp_path / "out")
    run_study(seeds=[0, 1], only="ρ 0.4", **kwargs)
    assert trained == [(0, 0.4), (1, 0.4)]
    report = run_study(seeds=[0, 1, 2], **kwargs)
    assert trained[2:] == [(0, 0.2), (1, 0.2), (2, 0.2), (2, 0.4)]
    branch = report["steps"]["root, ρ 0.4"]["mbae"]
    assert [r["seed"] for r in branch["per_seed"]] == [0, 1, 2]
    assert branch["valid_ndcg10"][0] == pytest.approx(0.41)
    run_study(seeds=[0, 1, 2], **kwargs)
    assert len(trained) == 6                                     # nothing retrained
    steps[1] = Step("root, ρ 0.4", {"rho": 0.5}, "root")         # settings changed: retrain
    run_study(seeds=[0], **kwargs)
    assert trained[6:] == [(0, 0.5)]


def test_every_prefix_branches_change_one_setting_of_full_s_stage1():
    root, *branches = recipes.every_prefix_steps()
    full = PROFILES["full"]
    assert all(getattr(full, k) == v for k, v in root.overrides.items())
    for step in branches:
        changed = {k for k in step.overrides if step.overrides[k] != root.overrides.get(k)}
        assert step.parent == root.name and len(changed) == 1, (step.name, changed)
