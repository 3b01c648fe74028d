"""Tests of fatsmb_lib.models.encoder: RoPE/BaRoPE math (Eqs. 10-13, 24-30), padding, the Cloze loss
(Eq. 14), latents z_b / z_∅, a short learning run, BaRoPE's table lookup and bf16 autocast.
The speed kernels have their own tests (test_kernels.py); the textbook RoPE is the oracle of
rope_oracle.py."""
import math

import pytest
import torch
import torch.nn.functional as F
from rope_oracle import apply_rope, rope_cos_sin

from fatsmb_lib.models.encoder import (
    MBAE,
    BaRoPE,
    BehaviorQueryConfig,
    EncoderConfig,
    MultiHeadSelfAttention,
    SequenceEncoder,
)
from fatsmb_lib.models.kernels import rope_tables, rotate_pairs
from fatsmb_lib.support.precision import autocast

N_ITEMS, N_BEH = 30, 3


def _config(**kw):
    base = dict(n_items=N_ITEMS, n_behaviors=N_BEH, d_model=16, n_heads=2, n_layers=2,
                dropout=0.0, max_len=10, position="barope", rope_base=10000.0)
    base.update(kw)
    return EncoderConfig(**base)


def _sequences(B=4, L=10, n_pad=(0, 3, 5, 9), seed=0):
    """Left-padded random items/behaviors; row r has n_pad[r] padded slots."""
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, N_ITEMS + 1, (B, L), generator=g)
    behaviors = torch.randint(1, N_BEH + 1, (B, L), generator=g)
    pad = torch.arange(L)[None, :] < torch.tensor(n_pad)[:, None]
    return items.masked_fill(pad, 0), behaviors.masked_fill(pad, 0)


def _random_barope(n_heads=2, d_head=8, seed=0):
    """A BaRoPE whose zero-initialised last layer is perturbed, so h(b) is random and != 1."""
    torch.manual_seed(seed)
    barope = BaRoPE(N_BEH, n_heads * d_head, n_heads)
    torch.nn.init.normal_(barope.mlp[-1].weight, std=1.0)
    torch.nn.init.normal_(barope.mlp[-1].bias, std=1.0)
    return barope


def _per_head(scale, n_heads=2):
    """BaRoPE's h (B, L, H·d) with heads side by side -> (B, H, L, d), the layout of q and k."""
    return scale.unflatten(-1, (n_heads, -1)).transpose(1, 2)


def _logits(q, k, positions, scale):
    """Pre-softmax scores of h·RoPE(q) and h·RoPE(k): (B, H, L, L)."""
    cos, sin = rope_cos_sin(positions, q.shape[-1], 10000.0)
    q, k = scale * apply_rope(q, cos, sin), scale * apply_rope(k, cos, sin)
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])


# ---------------------------------------------------------------- RoPE (Eqs. 10-11, 24)
def _rotate(x, positions, base=10000.0):
    """The library's rotation (kernels.rotate_pairs, one head) of x (..., L, d) at positions (L,)."""
    cos, signed_sin = rope_tables(int(positions.max()) + 1, 1, x.shape[-1], base, torch.device("cpu"), x.dtype)
    return rotate_pairs(x, cos[positions], signed_sin[positions], 1)


def test_rope_preserves_norm_and_is_identity_at_zero():
    torch.manual_seed(0)
    x = torch.randn(2, 2, 5, 8)
    y = _rotate(x, torch.tensor([0, 1, 7, 50, 400]))
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    assert not torch.allclose(y[..., 1:, :], x[..., 1:, :])
    torch.testing.assert_close(y[..., 0, :], x[..., 0, :])  # position 0: no rotation


def test_rope_score_depends_only_on_offset():
    """<f(q, m), f(k, n)> = g(q, k, m - n) (Eq. 10): same score for (m, n) and (m + c, n + c)."""
    torch.manual_seed(0)
    q, k = torch.randn(1, 8), torch.randn(1, 8)

    def score(m, n):
        return (_rotate(q, torch.tensor([m])) * _rotate(k, torch.tensor([n]))).sum()

    torch.testing.assert_close(score(7, 3), score(27, 23))
    torch.testing.assert_close(score(2, 9), score(0, 7))
    assert not torch.allclose(score(7, 3), score(7, 4))


def test_rope_oracle_accepts_batched_positions():
    """The oracle's per-row positions (used for per-row shifts below) rotate each row alone."""
    torch.manual_seed(0)
    x = torch.randn(2, 2, 4, 8)
    pos = torch.tensor([[0, 1, 2, 3], [5, 6, 7, 8]])
    cos, sin = rope_cos_sin(pos, 8, 10000.0)
    y = apply_rope(x, cos, sin)
    for b in range(2):
        cb, sb = rope_cos_sin(pos[b], 8, 10000.0)
        torch.testing.assert_close(y[b : b + 1], apply_rope(x[b : b + 1], cb, sb))


# ---------------------------------------------------------------- BaRoPE (Eqs. 13, 25-30)
def test_barope_shift_invariant_with_random_h():
    """Eq. 30: with h(b) != 1 the logits still depend on positions only through m - n."""
    barope = _random_barope()
    torch.manual_seed(1)
    B, H, L, d = 3, 2, 7, 8
    q, k = torch.randn(B, H, L, d), torch.randn(B, H, L, d)
    behaviors = torch.randint(0, N_BEH + 2, (B, L))  # any ids, incl. padding and [mask]
    with torch.no_grad():
        scale = _per_head(barope(behaviors))  # (B, H, L, d)
    assert not torch.allclose(scale, torch.ones_like(scale))
    pos = torch.arange(L)
    base = _logits(q, k, pos, scale)
    for shift in (1, 13, 250):
        torch.testing.assert_close(_logits(q, k, pos + shift, scale), base, atol=1e-4, rtol=1e-4)
    pos_b = torch.stack([pos + 5, pos + 40, pos])  # different shifts per row
    torch.testing.assert_close(_logits(q, k, pos_b, scale), base, atol=1e-4, rtol=1e-4)


def test_barope_h_is_one_value_per_pair():
    """h repeats one value over both coordinates of a pair (its table row, per head); a
    per-coordinate h breaks Eq. 30."""
    barope = _random_barope()
    behaviors = torch.tensor([[1, 2, 3, 4, 0]])
    with torch.no_grad():
        scale = _per_head(barope(behaviors))  # (1, H, L, d)
        table = barope.pair_scale_table()  # (n_behaviors+2, H, d/2)
    torch.testing.assert_close(scale[..., :4], scale[..., 4:])
    torch.testing.assert_close(scale[..., :4], table[behaviors].transpose(1, 2))

    torch.manual_seed(2)
    q, k = torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)
    pos = torch.arange(5)
    per_coordinate = scale * (1 + torch.rand_like(scale))  # two coordinates of a pair differ
    shifted, base = _logits(q, k, pos + 9, per_coordinate), _logits(q, k, pos, per_coordinate)
    assert (shifted - base).abs().max() > 1e-2  # per-coordinate h: not shift invariant
    torch.testing.assert_close(_logits(q, k, pos + 9, scale), _logits(q, k, pos, scale), atol=1e-4, rtol=1e-4)


def test_barope_at_init_equals_rope():
    """h ≡ 1 at initialisation: the BaRoPE attention equals the RoPE one with the same weights."""
    torch.manual_seed(0)
    rope = MultiHeadSelfAttention(16, 2, position="rope", rope_base=10000.0)
    barope = MultiHeadSelfAttention(16, 2, position="barope", n_behaviors=N_BEH, rope_base=10000.0)
    barope.load_state_dict(rope.state_dict(), strict=False)
    x = torch.randn(3, 6, 16)
    behaviors = torch.randint(1, N_BEH + 2, (3, 6))
    pad = torch.zeros(3, 6, dtype=torch.bool)
    torch.testing.assert_close(barope(x, behaviors, pad), rope(x, None, pad))
    model = SequenceEncoder(_config())  # the model-level init keeps the zero last layer
    for block in model.blocks:
        torch.testing.assert_close(block.attn.barope(behaviors), torch.ones(3, 6, 16))


def test_barope_attention_weights_match_eq_13():
    """Inside attention, q' = h(b_q)·RoPE(q) and k' = h(b_k)·RoPE(k) (Eq. 13): the weights equal a
    hand computation of softmax(q'k'^T / sqrt(d_k)) from the module's own projections."""
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(16, 2, position="barope", n_behaviors=N_BEH, rope_base=10000.0)
    torch.nn.init.normal_(attn.barope.mlp[-1].weight, std=1.0)
    x = torch.randn(2, 5, 16)
    behaviors = torch.randint(1, N_BEH + 1, (2, 5))
    pad = torch.zeros(2, 5, dtype=torch.bool)
    with torch.no_grad():
        weights = attn.attention_weights(x, behaviors, pad)
        q, k, _ = attn.qkv(x).split(16, dim=-1)
        q, k = (t.view(2, 5, 2, 8).transpose(1, 2) for t in (q, k))  # (B, H, L, d_head)
        h_pair = 1 + attn.barope.mlp(attn.barope.behavior_embedding(behaviors)).view(2, 5, 2, 4)
        h = h_pair.transpose(1, 2).repeat(1, 1, 1, 2)  # (B, H, L, d_head), half-split pairs
        expected = _logits(q, k, torch.arange(5), h).softmax(-1)
    torch.testing.assert_close(weights, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("position", ["rope", "barope"])
def test_rotary_encoder_ignores_absolute_offset(position):
    """Whole model, Eq. 30: moving a sequence by c columns (padding around it) leaves its outputs
    unchanged for RoPE/BaRoPE (h perturbed), while APE outputs change."""
    torch.manual_seed(0)
    model = SequenceEncoder(_config(position=position)).eval()
    if position == "barope":
        for block in model.blocks:
            torch.nn.init.normal_(block.attn.barope.mlp[-1].weight, std=0.5)
    items, behaviors = _sequences(B=1, L=5, n_pad=(0,))
    a_items, a_beh = torch.zeros(1, 10, dtype=torch.long), torch.zeros(1, 10, dtype=torch.long)
    b_items, b_beh = a_items.clone(), a_beh.clone()
    a_items[:, 1:6], a_beh[:, 1:6] = items, behaviors
    b_items[:, 4:9], b_beh[:, 4:9] = items, behaviors
    with torch.no_grad():
        ha = model(a_items, a_beh)
        hb = model(b_items, b_beh)
    torch.testing.assert_close(ha[:, 1:6], hb[:, 4:9], atol=1e-5, rtol=1e-5)
    ape = SequenceEncoder(_config(position="ape")).eval()
    with torch.no_grad():
        assert not torch.allclose(ape(a_items, a_beh)[:, 1:6], ape(b_items, b_beh)[:, 4:9], atol=1e-3)


# ---------------------------------------------------------------- attention and padding
@pytest.mark.parametrize("position", ["ape", "rope", "barope"])
@pytest.mark.parametrize("causal", [False, True])
def test_padding_never_changes_real_outputs(position, causal):
    torch.manual_seed(0)
    model = SequenceEncoder(_config(position=position, causal=causal)).eval()
    items, behaviors = _sequences()
    pad = items == 0
    # padding is item id 0; whatever behavior id sits in a padded slot must not matter
    other = torch.randint(0, N_BEH + 2, items.shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        h = model(items, behaviors)
        h2 = model(items, torch.where(pad, other, behaviors))
    torch.testing.assert_close(h[~pad], h2[~pad])
    assert not torch.allclose(h[pad], h2[pad])  # the change did reach the padded slots
    assert torch.isfinite(h).all()


@pytest.mark.parametrize("position", ["ape", "rope", "barope"])
def test_extra_padding_columns_change_nothing(position):
    """A padded slot with any item id treated as padding (0) is invisible: prepending padding
    columns leaves the real outputs unchanged (rotary and right-aligned APE)."""
    torch.manual_seed(0)
    model = SequenceEncoder(_config(position=position)).eval()
    items, behaviors = _sequences(B=4, L=8, n_pad=(0, 2, 5, 7))
    wide_items = torch.cat([torch.zeros(4, 2, dtype=torch.long), items], dim=1)
    wide_beh = torch.cat([torch.full((4, 2), 3), behaviors], dim=1)
    with torch.no_grad():
        h = model(items, behaviors)
        hw = model(wide_items, wide_beh)
    torch.testing.assert_close(h[items > 0], hw[:, 2:][items > 0], atol=1e-5, rtol=1e-5)


def test_fully_padded_row_is_finite():
    model = SequenceEncoder(_config(causal=True)).eval()
    items = torch.zeros(2, 6, dtype=torch.long)
    with torch.no_grad():
        h, weights = model(items, items), model.attention_weights(items, items)
    assert torch.isfinite(h).all() and all(torch.isfinite(w).all() for w in weights)


@pytest.mark.parametrize("position", ["ape", "rope", "barope"])
@pytest.mark.parametrize("causal", [False, True])
def test_fused_attention_is_eq_8_with_its_written_out_weights(position, causal):
    """The fused forward == W^O · Concat(weights @ v) (Eqs. 7-8), with the weights of
    attention_weights and v of the module's own projection."""
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(16, 2, position=position, n_behaviors=N_BEH, rope_base=10000.0,
                                  causal=causal)
    if position == "barope":
        torch.nn.init.normal_(attn.barope.mlp[-1].weight, std=0.5)
    x = torch.randn(4, 10, 16)
    items, behaviors = _sequences()
    with torch.no_grad():
        weights = attn.attention_weights(x, behaviors, items == 0)  # (B, H, L, L)
        _, _, v = attn.project(x, behaviors)  # (B, H, L, d_head)
        expected = attn.out((weights @ v).transpose(1, 2).reshape(4, 10, 16))
        torch.testing.assert_close(attn(x, behaviors, items == 0), expected, atol=1e-5, rtol=1e-5)
    if causal:
        assert (weights.triu(1) == 0).all()


@pytest.mark.parametrize("position", ["ape", "rope", "barope"])
def test_attention_weights_of_every_layer_skip_padded_keys(position):
    torch.manual_seed(0)
    model = SequenceEncoder(_config(position=position)).eval()
    items, behaviors = _sequences()
    with torch.no_grad():
        weights = model.attention_weights(items, behaviors)
    assert len(weights) == 2 and weights[0].shape == (4, 2, 10, 10)
    real_keys = (items > 0)[:, None, None, :]
    real_queries = (items > 0)[:, None, :, None]
    assert (weights[0].masked_select(~real_keys & real_queries) == 0).all()
    torch.testing.assert_close(weights[0].sum(-1), torch.ones(4, 2, 10))


def test_config_errors_say_what_to_do():
    with pytest.raises(AssertionError, match="divisible"):
        _config(d_model=15, n_heads=2)
    with pytest.raises(AssertionError, match="even head width"):
        _config(d_model=18, n_heads=2, position="rope")
    _config(d_model=18, n_heads=2, position="ape")  # APE has no rotation pairs
    with pytest.raises(AssertionError, match="use_behavior"):
        _config(use_behavior=False, position="barope")


def test_use_behavior_false_ignores_behaviors():
    torch.manual_seed(0)
    model = MBAE(_config(use_behavior=False, position="rope")).eval()
    items, behaviors = _sequences()
    with torch.no_grad():
        torch.testing.assert_close(model.encode(items, behaviors), model.encode(items, behaviors % 2 + 1))


# ---------------------------------------------------------------- MBAE: decoder and Cloze loss
def _cloze_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    items, behaviors = _sequences(seed=seed)
    masked = (torch.rand(items.shape, generator=g) < 0.4) & (items > 0)
    behavior_masked = masked & (torch.rand(items.shape, generator=g) < 0.5)
    return {
        "items": items.masked_fill(masked, N_ITEMS + 1),
        "behaviors": behaviors.masked_fill(behavior_masked, N_BEH + 1),
        "targets": items * masked,
        "target_behaviors": behaviors * masked,
        "behavior_masked": behavior_masked,
    }


def test_decode_is_tied_and_scores_all_items():
    torch.manual_seed(0)
    model = MBAE(_config())
    with torch.no_grad():
        model.decoder.bias.normal_()
    z = torch.randn(5, 16)
    expected = model.decoder.mlp(z) @ model.encoder.item_embedding.weight[1 : N_ITEMS + 1].T + model.decoder.bias
    torch.testing.assert_close(model.decode(z), expected)
    assert model.decode(torch.randn(2, 3, 16)).shape == (2, 3, N_ITEMS)
    decoder_ids = {id(p) for p in model.decoder.parameters()}  # stage 3 fine-tunes these alone
    assert id(model.encoder.item_embedding.weight) not in decoder_ids


def test_cloze_loss_is_cross_entropy_at_masked_positions_only():
    torch.manual_seed(0)
    model = MBAE(_config()).eval()
    batch = _cloze_batch()
    loss = model.loss(batch)
    with torch.no_grad():
        logits = model.decode(model.encode(batch["items"], batch["behaviors"]))  # (B, L, N)
    masked = batch["targets"] > 0
    assert 0 < masked.sum() < (batch["items"] > 0).sum()
    hand = F.cross_entropy(logits[masked], batch["targets"][masked] - 1)
    torch.testing.assert_close(loss, hand)
    # an independent derivation over ALL positions with zero weight where targets == 0
    logp = logits.log_softmax(-1).gather(-1, (batch["targets"] - 1).clamp(min=0)[..., None])[..., 0]
    torch.testing.assert_close(loss, -(logp * masked).sum() / masked.sum())
    # targets elsewhere are ignored: metadata of unmasked positions never enters the loss
    other = dict(batch, target_behaviors=batch["target_behaviors"] + 1, behavior_masked=~batch["behavior_masked"])
    torch.testing.assert_close(model.loss(other), loss)
    # while changing one target at a masked position does change it
    changed = batch["targets"].clone()
    changed[masked.nonzero()[0].unbind()] = changed[masked][0] % N_ITEMS + 1
    assert not torch.allclose(model.loss(dict(batch, targets=changed)), loss)


def test_cloze_loss_without_masks_is_zero_and_differentiable():
    model = MBAE(_config())
    batch = _cloze_batch()
    loss = model.loss(dict(batch, targets=torch.zeros_like(batch["targets"])))
    loss.backward()
    assert loss.item() == 0.0


# ---------------------------------------------------------------- latents z_b, z_∅
def _prefix(items, behaviors, target_behaviors):
    items = torch.cat([items[:, 1:], torch.full((items.shape[0], 1), N_ITEMS + 1)], dim=1)
    behaviors = torch.cat([behaviors[:, 1:], target_behaviors[:, None]], dim=1)
    return items, behaviors


def test_latents_stacked_equals_separate_and_null_ignores_target():
    torch.manual_seed(0)
    model = MBAE(_config()).eval()
    items, behaviors = _sequences()
    target = torch.tensor([1, 2, 3, 1])
    items, behaviors = _prefix(items, behaviors, target)
    with torch.no_grad():
        z_b, z_null = model.latents(items, behaviors, target)
        sep_b = model.encode(items, behaviors)[:, -1]
        null_beh = behaviors.clone()
        null_beh[:, -1] = N_BEH + 1
        sep_null = model.encode(items, null_beh)[:, -1]
        z_b2, z_null2 = model.latents(items, behaviors, target % 3 + 1)
        scores = model.score_all({"items": items, "behaviors": behaviors})
    assert z_b.shape == z_null.shape == (4, 16)
    torch.testing.assert_close(z_b, sep_b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(z_null, sep_null, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(z_b, z_null, atol=1e-4)
    torch.testing.assert_close(z_null2, z_null)  # z_∅ does not see the target behavior
    assert not torch.allclose(z_b2, z_b, atol=1e-4)  # z_b does
    torch.testing.assert_close(scores, model.decode(z_b), atol=1e-5, rtol=1e-5)  # stage-1 score


def test_latents_do_not_keep_the_encoder_output_alive():
    # prefix_latents keeps the latents of every batch; views into the (2B, L, D) output would
    # keep every batch's output alive (a process held ~1.2 GiB on ml100k)
    model = MBAE(_config()).eval()
    items, behaviors = _sequences()
    target = torch.tensor([1, 2, 3, 1])
    items, behaviors = _prefix(items, behaviors, target)
    with torch.no_grad():
        z_b, z_null = model.latents(items, behaviors, target)
        z_agnostic = model.behavior_agnostic(items, behaviors)
    B, D = z_b.shape
    assert z_b.untyped_storage().nbytes() == 2 * B * D * z_b.element_size()  # both variants, no L
    assert z_agnostic.untyped_storage().nbytes() == B * D * z_agnostic.element_size()


def test_latents_at_masked_positions():
    torch.manual_seed(0)
    model = MBAE(_config()).eval()
    items, behaviors = _sequences()
    positions = torch.zeros_like(items, dtype=torch.bool)
    positions[0, 3], positions[0, 7], positions[2, 9] = True, True, True
    with torch.no_grad():
        z_b, z_null, target, target_behavior = model.latents_at(items, behaviors, positions)
        masked_items = items.masked_fill(positions, N_ITEMS + 1)
        sep_b = model.encode(masked_items, behaviors)[positions]
        sep_null = model.encode(masked_items, behaviors.masked_fill(positions, N_BEH + 1))[positions]
    assert z_b.shape == (3, 16)
    torch.testing.assert_close(target, torch.stack([items[0, 3], items[0, 7], items[2, 9]]))
    torch.testing.assert_close(target_behavior, torch.stack([behaviors[0, 3], behaviors[0, 7], behaviors[2, 9]]))
    torch.testing.assert_close(z_b, sep_b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(z_null, sep_null, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(z_b, z_null, atol=1e-4)
    with pytest.raises(AssertionError, match="padded"):
        model.latents_at(items, behaviors, items == 0)


def test_attention_maps_one_sequence():
    torch.manual_seed(0)
    model = MBAE(_config()).train()
    items, behaviors = _sequences()
    maps = model.attention_maps(items[2], behaviors[2])  # row 2: 5 padded, 5 real slots
    assert maps.shape == (5, 5) and model.training
    torch.testing.assert_close(maps.sum(-1), torch.ones(5))  # padded keys carry no weight


# ---------------------------------------------------------------- learning
def test_mbae_overfits_a_few_sequences():
    """Eq. 14 is learnable: Cloze loss on fixed masked sequences drops far below log N."""
    torch.manual_seed(0)
    model = MBAE(_config(n_layers=1, d_model=32))
    batch = _cloze_batch(seed=3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = model.loss(batch).item()
    for _ in range(100):
        opt.zero_grad()
        loss = model.loss(batch)
        loss.backward()
        opt.step()
    assert first > 0.9 * math.log(N_ITEMS)
    assert loss.item() < 0.2 * first


# ---------------------------------------------------------------- fast paths of the model
def test_barope_table_lookup_equals_the_mlp_on_every_position():
    """h(b) from the (n_behaviors+2)-row table == 1 + MLP(e_b) run position by position."""
    barope = _random_barope()
    behaviors = torch.randint(0, N_BEH + 2, (3, 6))
    with torch.no_grad():
        per_position = 1 + barope.mlp(barope.behavior_embedding(behaviors))  # (B, L, H*d/2)
        h = barope(behaviors, copies=2).view(3, 6, 2, 2, 2, 4)  # q|k, head, half
    torch.testing.assert_close(h[:, :, 0, :, 0], per_position.view(3, 6, 2, 4))
    for qk in range(2):
        for half in range(2):
            torch.testing.assert_close(h[:, :, qk, :, half], h[:, :, 0, :, 0])


def test_bf16_autocast_training_step_is_close_to_fp32():
    """One Cloze loss + gradient under bf16 autocast (precision.autocast) vs fp32."""
    torch.manual_seed(0)
    model = MBAE(_config(d_model=32))
    for block in model.encoder.blocks:  # h != 1, so BaRoPE's path is exercised too
        torch.nn.init.normal_(block.attn.barope.mlp[-1].weight, std=0.3)
    batch = _cloze_batch()
    losses, grads = [], []
    for precision in ("fp32", "bf16"):
        model.zero_grad()
        with autocast("cpu", precision):
            loss = model.loss(batch)
        loss.backward()
        assert loss.dtype == torch.float32
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert abs(losses[0] - losses[1]) < 0.01 * losses[0]
    cosine = F.cosine_similarity(grads[0], grads[1], dim=0).item()
    assert cosine > 0.99, cosine


def test_the_behavior_query_starts_as_the_paper_s_mbae_and_then_reads_the_behavior():
    """q = h + MLP([h; e_b]) with the MLP's last layer at zero: the same outputs as the MBAE
    without it; once that layer moves, the output at a [mask] depends on its behavior."""
    torch.manual_seed(0)
    config = _config()
    paper = MBAE(config).eval()
    with_query = MBAE(config, BehaviorQueryConfig(config.d_model, config.n_behaviors)).eval()
    with_query.load_state_dict(paper.state_dict(), strict=False)
    items = torch.randint(1, config.n_items + 1, (3, config.max_len))
    behaviors = torch.randint(1, config.n_behaviors + 1, (3, config.max_len))
    assert torch.equal(with_query.encode(items, behaviors), paper.encode(items, behaviors))
    torch.nn.init.normal_(with_query.query.mlp[-1].weight)
    z_b1, _ = with_query.latents(items, behaviors, torch.full((3,), 1))
    z_b2, _ = with_query.latents(items, behaviors, torch.full((3,), 2))
    h = with_query.encoder(items, with_query._last_behavior(behaviors, 1))[:, -1]
    assert torch.allclose(z_b1, with_query.query(h[:, None], torch.full((3, 1), 1))[:, 0])
    assert not torch.allclose(z_b1 - h, z_b2 - with_query.encoder(
        items, with_query._last_behavior(behaviors, 2))[:, -1])
