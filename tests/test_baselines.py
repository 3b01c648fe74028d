"""Tests of fatsmb_lib.models.baselines: Pop counts, BERT4Rec = behavior-free MBAE, SASRec causality and
its next-item loss."""
import pytest
import torch
import torch.nn.functional as F

from fatsmb_lib.models.baselines import BERT4Rec, Pop, SASRec
from fatsmb_lib.models.encoder import MBAE, EncoderConfig

N_ITEMS, N_BEH = 12, 2


def _config(**kw):
    base = dict(n_items=N_ITEMS, n_behaviors=N_BEH, d_model=16, n_heads=2, n_layers=2,
                dropout=0.0, max_len=8, position="barope", rope_base=10000.0)
    base.update(kw)
    return EncoderConfig(**base)


def _sequences(B=3, L=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, N_ITEMS + 1, (B, L), generator=g)
    behaviors = torch.randint(1, N_BEH + 1, (B, L), generator=g)
    pad = torch.arange(L)[None, :] < torch.tensor([0, 2, 5])[:, None]
    return items.masked_fill(pad, 0), behaviors.masked_fill(pad, 0)


# ---------------------------------------------------------------- Pop
def test_pop_overall_and_per_behavior_counts():
    # training pairs (item, behavior); item 0 = padding is skipped
    items = torch.tensor([3, 3, 1, 3, 5, 1, 0, 12])
    behaviors = torch.tensor([1, 2, 2, 1, 2, 2, 1, 1])
    # hand counts, column j = item j+1
    overall = torch.zeros(N_ITEMS)
    overall[[2, 0, 4, 11]] = torch.tensor([3.0, 2.0, 1.0, 1.0])
    beh1, beh2 = torch.zeros(N_ITEMS), torch.zeros(N_ITEMS)
    beh1[[2, 11]] = torch.tensor([2.0, 1.0])
    beh2[[2, 0, 4]] = torch.tensor([1.0, 2.0, 1.0])
    batch = {"items": torch.zeros(3, 4, dtype=torch.long), "target_behavior": torch.tensor([2, 1, 2])}

    pop = Pop.fit(items, behaviors, N_ITEMS, N_BEH)
    torch.testing.assert_close(pop.score_all(batch), overall.expand(3, -1))
    per = Pop.fit(items, behaviors, N_ITEMS, N_BEH, per_behavior=True)
    torch.testing.assert_close(per.score_all(batch), torch.stack([beh2, beh1, beh2]))
    with pytest.raises(NotImplementedError, match="Pop.fit"):
        pop.loss(batch)


# ---------------------------------------------------------------- BERT4Rec
def test_bert4rec_is_mbae_without_behaviors():
    torch.manual_seed(0)
    model = BERT4Rec(_config()).eval()  # the config asks for BaRoPE + behaviors; overridden
    assert isinstance(model, MBAE)
    assert model.config.position == "ape" and not model.config.use_behavior
    assert model.encoder.behavior_embedding is None
    items, behaviors = _sequences()
    with torch.no_grad():
        torch.testing.assert_close(model.encode(items, behaviors), model.encode(items, behaviors % 2 + 1))


# ---------------------------------------------------------------- SASRec
def _next_item_batch():
    items, behaviors = _sequences()
    targets = torch.cat([items[:, 1:], torch.tensor([[4], [7], [1]])], dim=1)
    targets = targets.masked_fill(items == 0, 0)
    return {"items": items, "behaviors": behaviors, "targets": targets,
            "target_behaviors": torch.cat([behaviors[:, 1:], torch.ones(3, 1, dtype=torch.long)], dim=1)}


@pytest.mark.parametrize("use_behavior", [False, True])
def test_sasrec_is_causal(use_behavior):
    torch.manual_seed(0)
    model = SASRec(_config(), use_behavior=use_behavior).eval()
    items, behaviors = _sequences()
    with torch.no_grad():
        h = model.encoder(items, behaviors)
        for t in (3, 6):
            later_items, later_beh = items.clone(), behaviors.clone()
            later_items[:, t:] = torch.randint(1, N_ITEMS + 1, later_items[:, t:].shape)
            later_beh[:, t:] = 3 - later_beh[:, t:].clamp(min=1)
            h2 = model.encoder(later_items, later_beh)
            real = (items > 0)[:, :t]
            torch.testing.assert_close(h2[:, :t][real], h[:, :t][real])
            assert not torch.allclose(h2[:, t:], h[:, t:])


def test_sasrec_score_all_ignores_mask_column():
    torch.manual_seed(0)
    model = SASRec(_config(), use_behavior=True).eval()
    items, behaviors = _sequences()
    items = torch.cat([items[:, 1:], torch.full((3, 1), N_ITEMS + 1)], dim=1)
    behaviors = torch.cat([behaviors[:, 1:], torch.tensor([[1], [2], [1]])], dim=1)
    with torch.no_grad():
        scores = model.score_all({"items": items, "behaviors": behaviors})
        other = behaviors.clone()
        other[:, -1] = 3 - other[:, -1]
        torch.testing.assert_close(model.score_all({"items": items, "behaviors": other}), scores)
        h = model.encoder(items, behaviors)
        torch.testing.assert_close(scores, h[:, -2] @ model.encoder.item_embedding.weight[1 : N_ITEMS + 1].T)
    assert scores.shape == (3, N_ITEMS)


def test_sasrec_loss_is_next_item_cross_entropy_over_all_items():
    torch.manual_seed(0)
    model = SASRec(_config()).eval()
    batch = _next_item_batch()
    with torch.no_grad():
        h = model.encoder(batch["items"], batch["behaviors"])
        logits = h @ model.encoder.item_embedding.weight[1 : N_ITEMS + 1].T  # (B, L, N)
        valid = batch["targets"] > 0
        logp = logits.log_softmax(-1).gather(-1, (batch["targets"] - 1).clamp(min=0)[..., None])[..., 0]
        hand = -(logp * valid).sum() / valid.sum()
        loss = model.loss(batch)
    torch.testing.assert_close(loss, hand)
    torch.testing.assert_close(loss, F.cross_entropy(logits[valid], batch["targets"][valid] - 1))


def test_sasrec_learns_next_item():
    """A short run on a fixed batch drives the next-item loss well below log N."""
    torch.manual_seed(0)
    model = SASRec(_config(n_layers=1, d_model=32))
    batch = _next_item_batch()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = model.loss(batch).item()
    for _ in range(60):
        opt.zero_grad()
        loss = model.loss(batch)
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first
