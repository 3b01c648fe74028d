"""The three stages and FatsMB end to end on tiny synthetic data: what moves, what stays
frozen, what is reloaded, and that the models learn (beat popularity)."""
import dataclasses

import pytest
import torch

from fatsmb_lib.data.batches import PrefixView
from fatsmb_lib.data.preprocess import load_dataset
from fatsmb_lib.models.fatsmb import FatsMB
from fatsmb_lib.studies.latent_space import cosine_by_behavior, latent_scale, trajectory_distances
from fatsmb_lib.training.config import get_profile
from fatsmb_lib.training.context import Context
from fatsmb_lib.training.evaluate import recommend
from fatsmb_lib.training.peers import BASELINES, fit_pop, train_baseline
from fatsmb_lib.training.stages import finetune_decoder, prefix_latents, train_denoiser, train_mbae

SETTINGS = get_profile("smoke").replace(stage3_epochs=3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Stage 1 and stage 2 once for the whole module (a few seconds on tiny data)."""
    data = load_dataset("synthetic-tiny", tmp_path_factory.mktemp("data"))
    ctx = Context(data, SETTINGS, tmp_path_factory.mktemp("run"), device=torch.device("cpu"),
                  log=lambda line: None)
    mbae, history = train_mbae(ctx)
    latents = prefix_latents(mbae, ctx)
    fatsmb, _ = train_denoiser(mbae, ctx, latents=latents)
    return ctx, mbae, history, latents, fatsmb


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_mbae_beats_popularity_on_validation(trained):
    ctx, mbae, _, _, _ = trained
    pop = ctx.evaluate(fit_pop(ctx), "valid")["NDCG@10"]
    assert ctx.evaluate(mbae, "valid")["NDCG@10"] > 1.3 * pop


def test_stage2_leaves_encoder_and_decoder_untouched(trained):
    ctx, mbae, _, latents, fatsmb = trained
    assert _same(_state(mbae), _state(fatsmb.mbae)), "stage 2 changed the MBAE"
    assert fatsmb.mbae is not mbae, "FatsMB must hold its own copy of the stage-1 MBAE"


def test_stage3_moves_only_the_decoder(trained, tmp_path):
    ctx, mbae, _, latents, _ = trained
    fatsmb, _ = train_denoiser(mbae, ctx, latents=latents)     # reloaded from its checkpoint
    encoder, denoiser, decoder = (_state(m) for m in (fatsmb.mbae.encoder, fatsmb.denoiser,
                                                     fatsmb.mbae.decoder))
    finetune_decoder(fatsmb, dataclasses.replace(ctx, run_dir=tmp_path), latents=latents)
    assert _same(encoder, _state(fatsmb.mbae.encoder))
    assert _same(denoiser, _state(fatsmb.denoiser))
    assert not _same(decoder, _state(fatsmb.mbae.decoder)), "stage 3 did not train the decoder"
    assert _same(_state(mbae), _state(trained[1])), "stage 3 changed the stage-1 model"


def test_fatsmb_beats_popularity_end_to_end(trained):
    ctx, _, _, _, fatsmb = trained
    pop = ctx.evaluate(fit_pop(ctx), "test")["NDCG@10"]
    assert ctx.evaluate(fatsmb, "test")["NDCG@10"] > 1.3 * pop


def test_a_finished_stage_is_reloaded_not_retrained(trained):
    ctx, mbae, history, _, _ = trained
    again, history_again = train_mbae(ctx)
    assert history_again.epochs == history.epochs
    assert _same(_state(mbae), _state(again))


def test_recommend_gives_k_distinct_items_per_behavior(trained):
    ctx, mbae, _, _, fatsmb = trained
    data = ctx.data
    sizes = dict(n_items=data.n_items, n_behaviors=data.n_behaviors, max_len=ctx.profile.max_len)
    history = data.seq_items[:30], data.seq_behaviors[:30]
    for model in (fatsmb, mbae, fit_pop(ctx)):
        for b in range(1, data.n_behaviors + 1):
            top = [item for item, _ in recommend(model, *history, b, **sizes)]
            assert len(set(top)) == 10 and min(top) >= 1 and max(top) <= data.n_items
    titles = [f"item {i}" for i in range(1, data.n_items + 1)]
    named = recommend(mbae, *history, 1, **sizes, k=3, titles=titles)
    assert [name for _, name in named] == [f"item {i}" for i, _ in named]


def test_recommend_matches_score_all_on_the_same_row(trained):
    ctx, mbae, _, _, _ = trained
    data = ctx.data
    batch = next(iter(ctx.loader("test")))
    u = 0
    history = slice(data.offsets[u], data.offsets[u + 1] - 1)
    mbae.eval()
    with torch.no_grad():
        expected = mbae.score_all({k: v[:1] for k, v in batch.items()}).topk(5).indices[0] + 1
    got = recommend(mbae, data.seq_items[history], data.seq_behaviors[history],
                    int(batch["target_behavior"][0]), n_items=data.n_items,
                    n_behaviors=data.n_behaviors, max_len=ctx.profile.max_len, k=5)
    assert [item for item, _ in got] == expected.tolist()


def test_prefix_latents_match_the_encoder(trained):
    ctx, mbae, _, latents, _ = trained
    view = PrefixView(ctx.data, ctx.profile.max_len, "train", ctx.profile.prefixes_per_user)
    batch = view.__getitems__(list(range(5)))
    mbae.eval()
    with torch.no_grad():
        z_b, z_null = mbae.latents(batch["items"], batch["behaviors"], batch["target_behavior"])
    assert torch.allclose(latents["z_b"][:5], z_b, atol=1e-5)
    assert torch.allclose(latents["z_null"][:5], z_null, atol=1e-5)
    assert torch.equal(latents["target"][:5], batch["target"])


def test_prefixes_per_user_keeps_the_most_recent_targets(trained):
    data = trained[0].data
    split = data.split()
    every = PrefixView(data, 20, "train")
    recent = PrefixView(data, 20, "train", per_user=3)
    expected = sum(min(3, n - 1) for n in split.train_end - split.train_start)
    assert len(recent) == expected < len(every)
    targets = set(recent.end.tolist())
    for u in range(data.n_users):                   # exactly the last three training targets
        last = set(range(max(split.train_start[u] + 1, split.train_end[u] - 3), split.train_end[u]))
        assert last <= targets


def test_latent_helpers_by_hand():
    z_null = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z_by_b = torch.tensor([[[1.0, 1.0], [0.0, -1.0]]])                  # one behavior
    cos = cosine_by_behavior(z_null, z_by_b)
    assert torch.allclose(cos, torch.tensor([[2 ** -0.5, -1.0]]))
    traj = [torch.zeros(2, 2), torch.ones(2, 2)]
    d = trajectory_distances(traj, torch.ones(2, 2), torch.zeros(2, 2))
    assert d.shape == (2, 2) and d[0, 1] == 0 and abs(d[0, 0] - 2 ** 0.5) < 1e-6
    scale = latent_scale(torch.tensor([[3.0, 4.0], [0.0, 5.0]]), torch.tensor([[3.0, 3.0], [0.0, 4.0]]))
    assert scale["|z_b|"] == 5.0 and scale["|z_b − z_∅|"] == 1.0 and scale["|z_b − z_∅| / |z_b|"] == 0.2
    assert abs(scale["cos(z_b, z_∅)"] - (21 / (5 * 18 ** 0.5) + 1.0) / 2) < 1e-6


def test_stage2_on_cloze_positions_learns(trained, tmp_path):
    """The paper's wording: (z_b, z_∅) at Cloze-masked positions, re-masked every epoch."""
    ctx, mbae, _, _, _ = trained
    fresh = dataclasses.replace(ctx, run_dir=tmp_path).replace(stage2_source="cloze",
                                                               stage2_epochs=4)
    model, history = train_denoiser(mbae, fresh)
    assert len(history.epochs) == 4
    assert history.train_loss[-1] < 0.8 * history.train_loss[0]
    with pytest.raises(ValueError, match="stage2_source must be"):
        train_denoiser(mbae, fresh.replace(stage2_source="random"))


@pytest.mark.parametrize("kind", ["mlp", "adaln"])
def test_ablation_denoisers_learn_like_mcgln(trained, tmp_path, kind):
    ctx, mbae, _, latents, _ = trained
    run = dataclasses.replace(ctx, run_dir=tmp_path).replace(denoiser=kind, stage2_epochs=4)
    _, history = train_denoiser(mbae, run, latents=latents)
    assert history.train_loss[-1] < 0.8 * history.train_loss[0]


def test_stage3_improves_the_validation_metric_of_a_stage2_model(trained, tmp_path):
    ctx, mbae, _, latents, _ = trained
    run = dataclasses.replace(ctx, run_dir=tmp_path).replace(stage3_epochs=10)
    fatsmb, _ = train_denoiser(mbae, run, latents=latents)
    before = run.evaluate(fatsmb, "valid")["NDCG@10"]
    finetune_decoder(fatsmb, run, latents=latents)
    assert run.evaluate(fatsmb, "valid")["NDCG@10"] > before + 0.002


def test_evaluating_a_sampling_model_is_repeatable_and_leaves_the_global_rng_alone(trained):
    ctx, _, _, _, fatsmb = trained
    state = torch.get_rng_state()
    first = ctx.evaluate(fatsmb, "valid")
    assert torch.equal(torch.get_rng_state(), state)
    assert ctx.evaluate(fatsmb, "valid") == first
    other_seed = dataclasses.replace(ctx, seed=ctx.seed + 1).evaluate(fatsmb, "valid")
    assert other_seed["NDCG@10"] != first["NDCG@10"]  # z_T comes from the run's generator


def test_checkpoints_are_keyed_by_what_changes_the_weights(trained, tmp_path):
    ctx, mbae, _, latents, _ = trained
    run = dataclasses.replace(ctx, run_dir=tmp_path).replace(stage2_epochs=1)
    train_denoiser(mbae, run, latents=latents)
    files = set(tmp_path.iterdir())
    _, history = train_denoiser(mbae, run.replace(omega=3.0, stride=5, eta=0.5),
                                latents=latents)        # sampler-only: reloaded, not retrained
    assert set(tmp_path.iterdir()) == files
    train_denoiser(mbae, run.replace(p_uncond=0.5), latents=latents)   # trains a new file
    new = set(tmp_path.iterdir()) - files
    assert len(new) == 1 and next(iter(new)).name.startswith("denoiser-mcgln-x0-")


def test_stage2_batch_size_sets_the_denoiser_batches_alone(trained, tmp_path, monkeypatch):
    ctx, mbae, _, latents, _ = trained
    run = dataclasses.replace(ctx, run_dir=tmp_path).replace(stage2_epochs=1, stage3_epochs=1)
    sizes = {"diffusion_loss": [], "loss": []}   # rows per step of stage 2 and of stage 3
    for name, rows in sizes.items():
        real = getattr(FatsMB, name)
        monkeypatch.setattr(FatsMB, name, lambda self, batch, real=real, rows=rows:
                            rows.append(len(batch["z_null"])) or real(self, batch))
    train_denoiser(mbae, run, latents=latents)
    assert max(sizes["diffusion_loss"]) == SETTINGS.batch_size
    sizes["diffusion_loss"].clear()
    larger = run.replace(stage2_batch_size=32)
    model, _ = train_denoiser(mbae, larger, latents=latents)
    assert max(sizes["diffusion_loss"]) == 32
    assert len(sizes["diffusion_loss"]) == -(-len(latents["target"]) // 32)   # one epoch
    assert len(list(tmp_path.glob("denoiser-*.pt"))) == 2     # a new checkpoint, not a reload
    finetune_decoder(model, larger, latents=latents)
    assert max(sizes["loss"]) == SETTINGS.batch_size            # stage 3 keeps batch_size


def test_sampler_settings_change_inference_only_inside_the_context(trained):
    ctx, _, _, _, fatsmb = trained
    base = ctx.evaluate(fatsmb, "valid")["NDCG@10"]
    with fatsmb.sampler(omega=0.0, stride=ctx.profile.T):
        assert fatsmb.diffusion.cfg.omega == 0.0
        changed = ctx.evaluate(fatsmb, "valid")["NDCG@10"]
    assert fatsmb.diffusion.cfg.omega == ctx.profile.omega
    assert changed != base and ctx.evaluate(fatsmb, "valid")["NDCG@10"] == base
    with pytest.raises(TypeError, match="sampler"):
        with fatsmb.sampler(T=10):
            pass


def test_initial_weights_and_training_are_a_function_of_the_seed(trained, tmp_path):
    ctx, mbae, _, _, _ = trained
    run = dataclasses.replace(ctx, run_dir=tmp_path).replace(stage1_epochs=2)
    torch.manual_seed(1)
    first, _ = train_mbae(dataclasses.replace(run, run_dir=tmp_path / "a"))
    torch.manual_seed(2)  # whatever the global state before the call
    second, _ = train_mbae(dataclasses.replace(run, run_dir=tmp_path / "b"))
    assert _same(_state(first), _state(second))
    third, _ = train_mbae(dataclasses.replace(run, run_dir=tmp_path / "c", seed=1))
    assert not _same(_state(first), _state(third))


def test_offset_diffusion_with_standard_scaling_learns_and_keeps_its_statistics(trained, tmp_path):
    ctx, mbae, _, latents, _ = trained
    run = dataclasses.replace(ctx, run_dir=tmp_path).replace(
        diffusion_target="offset", latent_scaling="standard", stage2_epochs=4)
    model, history = train_denoiser(mbae, run, latents=latents)
    assert history.train_loss[-1] < 0.8 * history.train_loss[0]
    offset = latents["z_b"] - latents["z_null"]
    assert torch.allclose(model.space.mean, offset.mean(0), atol=1e-5)
    reloaded, _ = train_denoiser(mbae, run, latents=latents)       # from the checkpoint
    assert torch.equal(reloaded.space.std, model.space.std)


@pytest.mark.parametrize("name", list(BASELINES))
def test_every_baseline_trains_through_fit_and_is_reloaded(trained, tmp_path, name):
    ctx = dataclasses.replace(trained[0], run_dir=tmp_path).replace(
        baseline_epochs=2, stage1_epochs=2, prefixes_per_user=3)
    model, history = train_baseline(ctx, name)
    (checkpoint,) = tmp_path.glob("*.pt")
    assert len(history.epochs) == 2 and checkpoint.name.startswith(BASELINES[name].key)
    again, _ = train_baseline(ctx, name)
    assert _same(_state(model), _state(again))
    assert ctx.evaluate(model, "valid")["n"] == ctx.data.n_users


def test_stage3_samples_with_the_run_s_omega_not_the_model_s(trained, monkeypatch):
    """``finetune_decoder(model, ctx.replace(omega=3))`` trains on latents sampled with ω = 3
    (a checkpoint of its own) and keeps ω = 3 for inference."""
    ctx, mbae, _, latents, _ = trained
    fatsmb, _ = train_denoiser(mbae, ctx, latents=latents)
    seen = []
    generate = FatsMB.generate

    def recording(self, *args, **kwargs):
        seen.append(self.diffusion.cfg.omega)
        return generate(self, *args, **kwargs)
    monkeypatch.setattr(FatsMB, "generate", recording)
    finetune_decoder(fatsmb, ctx.replace(omega=3.0, stage3_epochs=1), latents=latents)
    assert seen and set(seen) == {3.0}
    assert fatsmb.diffusion.cfg.omega == 3.0
    assert len(list(ctx.run_dir.glob("decoder-*.pt"))) >= 1
