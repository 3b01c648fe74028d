"""The three stages and FatsMB end to end on tiny synthetic data: what moves, what stays
frozen, what is reloaded, and that the models learn (beat popularity)."""
from pathlib import Path

import pytest
import torch

from fatsmb_lib.batches import PrefixView
from fatsmb_lib.config import get_profile
from fatsmb_lib.model import recommend
from fatsmb_lib.latents import cosine_by_behavior, trajectory_distances
from fatsmb_lib.preprocess import load_dataset
from fatsmb_lib.stages import (Context, finetune_decoder, fit_pop, prefix_latents, train_denoiser,
                               train_mbae)

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
    finetune_decoder(fatsmb, Context(ctx.data, ctx.profile, tmp_path, ctx.device, log=ctx.log),
                     latents=latents)
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


def test_prefixes_per_user_keeps_the_most_recent_targets():
    data = load_dataset("synthetic-tiny", Path("data"))
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


def test_stage2_on_cloze_positions_trains(trained, tmp_path):
    """The paper's wording: (z_b, z_∅) at Cloze-masked positions, re-masked every epoch."""
    ctx, mbae, _, _, _ = trained
    fresh = Context(ctx.data, ctx.profile, tmp_path, ctx.device, log=ctx.log)
    model, history = train_denoiser(mbae, fresh, source="cloze", epochs=2)
    assert len(history.epochs) == 2 and all(loss == loss for loss in history.train_loss)
    with pytest.raises(ValueError, match="source must be"):
        train_denoiser(mbae, fresh, source="random")
