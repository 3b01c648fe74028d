"""Figure 8's sweeps: each value reaches the model it is about (stage 1 retrained for ρ and σ,
stages 2-3 for T, the sampler alone for Δt and ω), the ledger resumes, and a point is drawn
only once it has three seeds."""
import matplotlib

from fatsmb_lib.studies import sweeps
from fatsmb_lib.studies.sweeps import cell, curve, run_sweeps

matplotlib.use("Agg")
SHORT = {"stage1_epochs": 1, "stage2_epochs": 1, "stage3_epochs": 1, "min_epochs": 1,
         "max_users": 120}
GRIDS = {"rho": ((0.2, 0.4), "MBAE", "ρ"), "T": ((50, 200), "FatsMB", "T"),
         "omega": ((0.0, 2.0), "FatsMB", "ω")}


def test_each_value_reaches_its_model_and_the_ledger_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(sweeps, "SWEEPS", GRIDS)
    stage1, stage2, sampled = [], [], []
    real_mbae, real_denoiser = sweeps.train_mbae, sweeps.train_denoiser

    def spy_mbae(ctx):
        stage1.append(ctx.profile.rho)
        return real_mbae(ctx)

    def spy_denoiser(mbae, ctx, **kw):
        stage2.append(ctx.profile.T)
        return real_denoiser(mbae, ctx, **kw)

    def spy_row(ctx, model, seconds):
        sampled.append(getattr(getattr(model, "diffusion", None), "cfg", None))
        return {"valid": {"NDCG@10": 0.1, "Recall@10": 0.2},
                "test": {"NDCG@10": 0.1, "Recall@10": 0.2}, "seconds": seconds}

    monkeypatch.setattr(sweeps, "train_mbae", spy_mbae)
    monkeypatch.setattr(sweeps, "train_denoiser", spy_denoiser)
    monkeypatch.setattr(sweeps, "_row", spy_row)
    kwargs = dict(dataset="synthetic-tiny", profile="smoke", device="cpu",
                  run_dir=tmp_path / "run", out_dir=tmp_path / "out", data_dir=tmp_path / "data",
                  log=lambda line: None, **SHORT)
    ledger = run_sweeps(seeds=[0], fields=("rho", "T", "omega"), **kwargs)
    assert stage1 == [0.2, 0.4]                 # the profile's MBAE, then ρ 0.4 alone
    assert stage2 == [50, 50, 200]               # smoke's T = 50 (reloaded for T=50), then 200
    omegas = [cfg.omega for cfg in sampled[:2]]
    assert omegas == [0.0, 2.0]                 # ω reached the sampler, nothing retrained
    assert {c for c in ledger.cells} == {cell(f, v) for f, g in GRIDS.items() for v in g[0]}
    run_sweeps(seeds=[0], fields=("rho", "T", "omega"), **kwargs)
    assert stage1 == [0.2, 0.4]                 # nothing again
    assert curve(ledger, "omega") == {}         # one seed: no point drawn
    assert (tmp_path / "out" / "sweeps.png").is_file()


def test_table_4s_components_are_swept_by_name(tmp_path, monkeypatch):
    monkeypatch.setattr(sweeps, "SWEEPS", {"position": (("ape", "barope"), "MBAE", "position"),
                                           "denoiser": (("mlp", "mcgln"), "FatsMB", "denoiser")})
    built = []
    real_mbae, real_denoiser = sweeps.train_mbae, sweeps.train_denoiser
    monkeypatch.setattr(sweeps, "train_mbae",
                        lambda ctx: built.append(ctx.profile.position) or real_mbae(ctx))
    monkeypatch.setattr(sweeps, "train_denoiser", lambda mbae, ctx, **kw: built.append(
        ctx.profile.denoiser) or real_denoiser(mbae, ctx, **kw))
    ledger = run_sweeps("synthetic-tiny", [0], "smoke", None, "cpu", tmp_path / "run",
                        tmp_path / "out", tmp_path / "data", lambda line: None, **SHORT)
    assert built == ["barope", "mlp", "mcgln", "ape"]   # the cheap half first
    row = ledger.runs(cell("position", "ape"))["0"]
    assert set(row["test"]) == {"Recall@10", "NDCG@10", "Recall@20", "NDCG@20"}
    report = (tmp_path / "out" / "sweeps.md").read_text()
    assert "| barope * | 1 |" in report and "test NDCG@20" in report
