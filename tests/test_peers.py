"""Tests of the peer baselines: GRU4Rec, behavior-aware SASRec, MB-STR and DiffuRec.

Each test targets the mechanism that defines its model (causality, where the target behavior
enters, which weights a behavior may touch, the diffusion's closed forms and randomness), and
one short run per model on tiny synthetic data checks that it learns (beats popularity).
"""
import pytest
import torch
import torch.nn.functional as F
from learning import best_validation

from fatsmb_lib.data.batches import ClozeCollate, ClozeView, NextItemView, PrefixView
from fatsmb_lib.models.baselines import BehaviorSASRec
from fatsmb_lib.models.diffurec import DiffuRec, DiffuRecConfig
from fatsmb_lib.models.diffusion import linear_betas
from fatsmb_lib.models.encoder import EncoderConfig
from fatsmb_lib.models.gru4rec import GRU4Rec, GRU4RecConfig
from fatsmb_lib.models.mbstr import (
    MBSTR,
    BehaviorLinear,
    MBSTRConfig,
    MultiBehaviorAttention,
    PairPositionBias,
    relative_buckets,
)
from fatsmb_lib.support.runtime import make_generator

N_ITEMS, N_BEH, B, L = 12, 3, 3, 8


def _encoder_config(n_items=N_ITEMS, n_behaviors=N_BEH, d_model=16, n_layers=2, max_len=L,
                    dropout=0.0):
    return EncoderConfig(n_items=n_items, n_behaviors=n_behaviors, d_model=d_model, n_heads=2,
                         n_layers=n_layers, dropout=dropout, max_len=max_len, position="ape",
                         use_behavior=True, causal=True, rope_base=10000.0)


def _sequences(seed=0, behaviors_in=(1, 2, 3)):
    """(B, L) items and behaviors, rows left-padded by 0, 2 and 5."""
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, N_ITEMS + 1, (B, L), generator=g)
    choice = torch.tensor(behaviors_in)
    behaviors = choice[torch.randint(0, len(choice), (B, L), generator=g)]
    pad = torch.arange(L)[None, :] < torch.tensor([0, 2, 5])[:, None]
    return items.masked_fill(pad, 0), behaviors.masked_fill(pad, 0)


def _next_item_batch(seed=0):
    items, behaviors = _sequences(seed)
    real = items > 0
    nxt = torch.tensor([[4], [7], [1]])
    targets = torch.cat([items[:, 1:], nxt], dim=1) * real
    target_behaviors = torch.cat([behaviors[:, 1:], torch.tensor([[2], [1], [3]])], dim=1) * real
    return {"items": items, "behaviors": behaviors, "targets": targets,
            "target_behaviors": target_behaviors}


def _prefix_batch(seed=0):
    """History in columns 0..L-2, then [mask] carrying the target behavior."""
    items, behaviors = _sequences(seed)
    items = torch.cat([items[:, 1:], torch.full((B, 1), N_ITEMS + 1)], dim=1)
    target_behavior = torch.tensor([2, 1, 3])
    behaviors = torch.cat([behaviors[:, 1:], target_behavior[:, None]], dim=1)
    return {"items": items, "behaviors": behaviors, "target": torch.tensor([5, 9, 2]),
            "target_behavior": target_behavior}


# ---------------------------------------------------------------- GRU4Rec
def test_gru4rec_is_causal():
    torch.manual_seed(0)
    model = GRU4Rec(GRU4RecConfig(n_items=N_ITEMS, d_model=16, dropout=0.0)).eval()
    items, _ = _sequences()
    with torch.no_grad():
        h = model(items)
        for t in (5, 7):
            later = items.clone()
            later[:, t:] = later[:, t:] % N_ITEMS + 1  # every later item changes
            h2 = model(later)
            torch.testing.assert_close(h2[:, :t], h[:, :t])
            assert not torch.allclose(h2[:, t:], h[:, t:])


def test_gru4rec_left_padding_leaves_the_state_at_zero():
    """No biases: padding (zero input) keeps s = s_0 = 0, so more padding changes nothing."""
    torch.manual_seed(0)
    model = GRU4Rec(GRU4RecConfig(n_items=N_ITEMS, d_model=16, dropout=0.0)).eval()
    items = torch.tensor([[0, 0, 0, 3, 8, 1], [0, 0, 0, 0, 0, 0]])
    with torch.no_grad():
        states, _ = model.gru(model.item_embedding(items))
        torch.testing.assert_close(states[:, :3], torch.zeros(2, 3, 16))
        torch.testing.assert_close(model(items[:, 3:])[0], model(items)[0, 3:])


def test_gru4rec_loss_is_hand_computed_cross_entropy():
    """One row [0, 3, 7] with targets [0, 7, 2]: the GRU equations written out, then CE."""
    torch.manual_seed(0)
    D = 4
    model = GRU4Rec(GRU4RecConfig(n_items=N_ITEMS, d_model=D, dropout=0.0)).eval()
    batch = {"items": torch.tensor([[0, 3, 7]]), "targets": torch.tensor([[0, 7, 2]])}
    E = model.item_embedding.weight
    W_ir, W_iz, W_in = model.gru.weight_ih_l0.detach().chunk(3)
    W_hr, W_hz, W_hn = model.gru.weight_hh_l0.detach().chunk(3)
    s = torch.zeros(D)
    losses = []
    for item, target in [(0, 0), (3, 7), (7, 2)]:
        x = E[item].detach()
        r = torch.sigmoid(W_ir @ x + W_hr @ s)
        z = torch.sigmoid(W_iz @ x + W_hz @ s)
        n = torch.tanh(W_in @ x + r * (W_hn @ s))
        s = (1 - z) * n + z * s
        if target:
            logits = (model.dense.weight @ s + model.dense.bias) @ E[1 : N_ITEMS + 1].T
            losses.append(-logits.log_softmax(-1)[target - 1])
    with torch.no_grad():
        torch.testing.assert_close(model.loss(batch), torch.stack(losses).mean())


def test_gru4rec_score_all_reads_the_newest_real_item():
    torch.manual_seed(0)
    model = GRU4Rec(GRU4RecConfig(n_items=N_ITEMS, d_model=16, dropout=0.0)).eval()
    batch = _prefix_batch()
    with torch.no_grad():
        scores = model.score_all(batch)
        full = model(batch["items"])  # the [mask] column fed too: causal, so column L-2 agrees
        torch.testing.assert_close(scores, full[:, -2] @ model.item_embedding.weight[1 : N_ITEMS + 1].T)


# ---------------------------------------------------------------- behavior-aware SASRec
def test_behavior_sasrec_is_causal():
    torch.manual_seed(0)
    model = BehaviorSASRec(_encoder_config()).eval()
    batch = _next_item_batch()
    real = batch["targets"] > 0
    with torch.no_grad():
        h = model.encoder(batch["items"], batch["behaviors"])
        scores = model.target_query(h[real], batch["target_behaviors"][real])
        for t in (4, 6):
            later_items, later_beh = batch["items"].clone(), batch["behaviors"].clone()
            later_items[:, t:] = later_items[:, t:] % N_ITEMS + 1
            later_beh[:, t:] = later_beh[:, t:] % N_BEH + 1
            h2 = model.encoder(later_items, later_beh)
            early = real.clone()
            early[:, t:] = False
            torch.testing.assert_close(model.target_query(h2[early], batch["target_behaviors"][early]),
                                       scores[early[real]])
        # the prefix batch's [mask] column (L-1) is invisible to column L-2 ...
        prefix = _prefix_batch()
        other = {**prefix, "items": prefix["items"].clone()}
        other["items"][:, -1] = 1
        torch.testing.assert_close(model.score_all(other), model.score_all(prefix))


def test_behavior_sasrec_target_behavior_changes_scores_of_its_row_only():
    """score_all reads the row's ``target_behavior``; the [mask] column's copy of it is never
    seen (causal attention keeps column L-1 out of the state at L-2)."""
    torch.manual_seed(0)
    model = BehaviorSASRec(_encoder_config()).eval()
    prefix = _prefix_batch()
    changed = {**prefix, "target_behavior": prefix["target_behavior"].clone()}
    changed["target_behavior"][0] = 3  # row 0: target behavior 2 -> 3
    mask_column = {**prefix, "behaviors": prefix["behaviors"].clone()}
    mask_column["behaviors"][:, -1] = 1
    with torch.no_grad():
        scores, scores2 = model.score_all(prefix), model.score_all(changed)
        torch.testing.assert_close(model.score_all(mask_column), scores)
    assert not torch.allclose(scores2[0], scores[0])
    torch.testing.assert_close(scores2[1:], scores[1:])


def test_behavior_sasrec_loss_uses_the_next_items_behavior():
    torch.manual_seed(0)
    model = BehaviorSASRec(_encoder_config()).eval()
    batch = _next_item_batch()
    real = batch["targets"] > 0
    with torch.no_grad():
        h = model.encoder(batch["items"], batch["behaviors"])
        items = model.encoder.item_embedding.weight[1 : N_ITEMS + 1]  # (N, D) the tied table
        logits = model.target_query(h[real], batch["target_behaviors"][real]) @ items.T  # (M, N)
        torch.testing.assert_close(model.loss(batch), F.cross_entropy(logits, batch["targets"][real] - 1))
        shifted = {**batch, "target_behaviors": (batch["target_behaviors"] % N_BEH + 1) * real}
        assert not torch.allclose(model.loss(shifted), model.loss(batch))


# ---------------------------------------------------------------- MB-STR
def _mbstr(n_layers=2):
    return MBSTR(MBSTRConfig(n_items=N_ITEMS, n_behaviors=N_BEH, d_model=16, n_heads=2,
                             n_layers=n_layers, dropout=0.0, mbstr_buckets=8, mbstr_max_distance=L,
                             mbstr_shared=3, mbstr_private=1))


def test_behavior_linear_uses_the_weights_of_each_tokens_behavior():
    torch.manual_seed(0)
    layer = BehaviorLinear(N_BEH, 5, 4)
    torch.nn.init.normal_(layer.bias)
    x = torch.randn(2, 6, 5)
    behaviors = torch.tensor([[0, 1, 2, 3, 1, 2], [3, 3, 0, 2, 1, 1]])
    y = layer(x, behaviors)
    for i in range(2):
        for j in range(6):
            b = int(behaviors[i, j])
            want = torch.zeros(4) if b == 0 else x[i, j] @ layer.weight[b - 1] + layer.bias[b - 1]
            torch.testing.assert_close(y[i, j], want)


def test_mbstr_behavior_weights_get_gradient_only_from_their_tokens():
    """Behavior 3 absent from the batch: its projections, FFN weights and every pair involving
    it get exactly zero gradient; behaviors 1 and 2 get some."""
    torch.manual_seed(0)
    model = _mbstr()
    items, behaviors = _sequences(behaviors_in=(1, 2))
    masked = (torch.arange(L) % 3 == 0) & (items > 0)
    model.loss({"items": torch.where(masked, N_ITEMS + 1, items), "behaviors": behaviors,
                "targets": items * masked, "target_behaviors": behaviors * masked}).backward()
    absent_pairs = torch.tensor([p for p in range(N_BEH**2) if 2 in divmod(p, N_BEH)])
    for block in model.blocks:
        for layer in (block.attn.qkv, block.ffn_in, block.ffn_out):
            assert torch.count_nonzero(layer.weight.grad[2]) == 0
            assert torch.count_nonzero(layer.bias.grad[2]) == 0
            assert all(torch.count_nonzero(layer.weight.grad[b]) > 0 for b in (0, 1))
        for mix in (block.attn.score_mix, block.attn.value_mix, block.attn.position_bias.table):
            assert torch.count_nonzero(mix.grad[absent_pairs]) == 0
            assert torch.count_nonzero(mix.grad) > 0


def test_mbstr_loss_is_cross_entropy_at_the_masked_positions_under_their_behavior():
    """Mean CE over all items of BA-Pred's scores at the masked positions, each under its own
    target behavior; equal (to float tolerance) to F.cross_entropy on the (M, N) logits."""
    torch.manual_seed(0)
    model = _mbstr().eval()
    items, behaviors = _sequences()
    masked = (torch.arange(L) % 3 != 1) & (items > 0)
    batch = {"items": torch.where(masked, N_ITEMS + 1, items), "behaviors": behaviors,
             "targets": items * masked, "target_behaviors": behaviors * masked}
    with torch.no_grad():
        h = model.encode(batch["items"], batch["behaviors"])
        logits = model.target_query(h[masked], behaviors[masked]) @ model.item_embedding.weight[1 : N_ITEMS + 1].T
        torch.testing.assert_close(model.loss(batch), F.cross_entropy(logits, items[masked] - 1))
        other = {**batch, "target_behaviors": (behaviors % N_BEH + 1) * masked}
        assert not torch.allclose(model.loss(other), model.loss(batch))


def test_multi_behavior_attention_matches_its_equations_written_out():
    """s_ij = q_i W_p k_j / sqrt(d_k) + β, o_i = Σ_j softmax_j(s_ij) v_j W'_p with the pair maps
    W_p = Σ_m α^m_p W^m formed explicitly, one (i, j) at a time."""
    torch.manual_seed(0)
    attn = MultiBehaviorAttention(8, 2, N_BEH, 0.0, 8, L)
    torch.nn.init.normal_(attn.position_bias.table)
    x = torch.randn(1, 5, 8)
    behaviors = torch.tensor([[0, 3, 1, 3, 2]])  # one padded key
    with torch.no_grad():
        y = attn(x, behaviors, behaviors == 0)
        q, k, v = (t.view(5, 2, 4).transpose(0, 1) for t in attn.qkv(x, behaviors)[0].split(8, -1))
        bias = attn.position_bias(behaviors)[0]  # (H, L, L)
        heads = torch.zeros(2, 5, 4)
        for h in range(2):
            for i in range(5):
                keys = [j for j in range(5) if behaviors[0, j] > 0 or j == i]
                pair = [(max(int(behaviors[0, i]), 1) - 1) * N_BEH + max(int(behaviors[0, j]), 1) - 1
                        for j in keys]
                W = [torch.einsum("m,mde->de", attn.score_mix[p, :, h].softmax(0), attn.score_basis[:, h])
                     for p in pair]
                V = [torch.einsum("m,mde->de", attn.value_mix[p, :, h].softmax(0), attn.value_basis[:, h])
                     for p in pair]
                s = torch.stack([q[h, i] @ W[n] @ k[h, j] / 2.0 + bias[h, i, j] for n, j in enumerate(keys)])
                a = s.softmax(0)
                heads[h, i] = sum(a[n] * (v[h, j] @ V[n]) for n, j in enumerate(keys))
        torch.testing.assert_close(y[0], attn.out(heads.transpose(0, 1).reshape(5, 8)))


def test_relative_buckets_are_exact_near_and_split_by_direction():
    bucket = relative_buckets(L, 8, L)  # half = 4 buckets per direction, exact for |d| < 2
    d = torch.arange(L)[:, None] - torch.arange(L)[None, :]
    assert torch.equal(bucket[d == 0], torch.zeros(L, dtype=torch.long))
    assert (bucket[d == 1] == 1).all() and (bucket[d == -1] == 5).all()
    assert (bucket[d >= 0] < 4).all() and (bucket[d < 0] >= 4).all()
    past = bucket[L - 1]  # query at L-1, keys ever farther in the past
    assert (past[:-1] >= past[1:]).all(), "buckets must grow with the distance"


def test_pair_bias_depends_only_on_behavior_pair_and_distance():
    torch.manual_seed(0)
    bias_layer = PairPositionBias(N_BEH, 2, 8, L)
    torch.nn.init.normal_(bias_layer.table)
    _, behaviors = _sequences()
    b = behaviors.clamp(min=1)  # padding counts as behavior 1 (never attended, never read)
    b_i, b_j = b[:, :, None], b[:, None, :]  # (B, L, 1), (B, 1, L)
    bucket = relative_buckets(L, 8, L)  # (L, L)
    with torch.no_grad():
        bias = bias_layer(behaviors)  # (B, H, L, L)
        want = bias_layer.table[(b_i - 1) * N_BEH + (b_j - 1), bucket].permute(0, 3, 1, 2)
        torch.testing.assert_close(bias, want)
        # one (pair, bucket) cell of the table moves exactly the logits of that (b_i, b_j, bucket)
        i, j = 5, 2
        cell = (int(b[0, i]) - 1) * N_BEH + int(b[0, j]) - 1
        bias_layer.table[cell, bucket[i, j]] += 1.0
        moved = (bias_layer(behaviors) - bias).ne(0).any(dim=1)  # (B, L, L)
    same = (b_i == b[0, i]) & (b_j == b[0, j]) & (bucket == bucket[i, j])
    assert torch.equal(moved, same)
    assert moved[0, i, j] and not moved.all()


def test_ba_pred_experts_of_other_behaviors_get_zero_gradient():
    torch.manual_seed(0)
    model = _mbstr(n_layers=1)
    h = torch.randn(5, 16)
    scores = model.target_query(h, torch.full((5,), 2)) @ model.item_embedding.weight[1 : N_ITEMS + 1].T
    scores.logsumexp(-1).sum().backward()
    moe = model.head_moe
    for name in ("private_w1", "private_b1", "private_w2", "private_b2", "gate_private"):
        grad = getattr(moe, name).grad
        assert torch.count_nonzero(grad[[0, 2]]) == 0, name
        assert torch.count_nonzero(grad[1]) > 0, name
    assert torch.count_nonzero(moe.shared_w1.grad) > 0


def test_mbstr_score_all_predicts_under_the_target_behavior():
    """The [mask] column's state under the row's ``target_behavior`` (which that column carries
    as its input behavior: both change together in a prefix batch)."""
    torch.manual_seed(0)
    model = _mbstr().eval()
    prefix = _prefix_batch()
    changed = {**prefix, "behaviors": prefix["behaviors"].clone(),
               "target_behavior": prefix["target_behavior"].clone()}
    changed["behaviors"][0, -1] = changed["target_behavior"][0] = 3
    with torch.no_grad():
        scores, scores2 = model.score_all(prefix), model.score_all(changed)
        h = model.encode(prefix["items"], prefix["behaviors"])
        queries = model.target_query(h[:, -1], prefix["target_behavior"])  # (B, D)
        torch.testing.assert_close(scores, queries @ model.item_embedding.weight[1 : N_ITEMS + 1].T)
    assert not torch.allclose(scores2[0], scores[0])
    torch.testing.assert_close(scores2[1:], scores[1:])


# ---------------------------------------------------------------- DiffuRec
def _diffurec(diffurec_lambda=0.001, eta=0.0):
    return DiffuRec(_encoder_config(max_len=L), DiffuRecConfig(
        diffurec_T=32, diffurec_schedule="linear", diffurec_stride=4, eta=eta,
        diffurec_lambda=diffurec_lambda))


def test_diffurec_forward_noising_matches_the_closed_form():
    torch.manual_seed(0)
    model = _diffurec()
    x0, eps = torch.randn(4, 16), torch.randn(4, 16)
    t = torch.tensor([0, 7, 19, 31])
    alpha_bar = torch.cumprod(1 - linear_betas(32).double(), 0)[t].float()[:, None]
    torch.testing.assert_close(model.diffusion.q_sample(x0, t, eps),
                               alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps)


def test_diffurec_loss_is_cross_entropy_of_the_reconstructed_target():
    """Replaying the loss's draws (t, ε, then λ) by hand: CE of f(S, x_t, t) over all items,
    with x_t the target's embedding noised in closed form."""
    torch.manual_seed(0)
    model = _diffurec(diffurec_lambda=0.5).eval()
    batch = _prefix_batch()
    torch.manual_seed(1)
    loss = model.loss(batch)
    torch.manual_seed(1)
    x0 = model.encoder.item_embedding(batch["target"])
    t = torch.randint(0, 32, (B,))
    eps = torch.randn_like(x0)
    alpha_bar = model.diffusion.alpha_bar[t][:, None]
    x_t = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps
    logits = model.reconstruct(batch["items"][:, :-1], x_t, t) @ model.encoder.item_embedding.weight[1 : N_ITEMS + 1].T
    torch.testing.assert_close(loss, F.cross_entropy(logits, batch["target"] - 1))


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_diffurec_sampling_uses_only_the_generator(eta):
    torch.manual_seed(0)
    model = _diffurec(diffurec_lambda=0.5, eta=eta).eval()
    batch = _prefix_batch()
    state = torch.get_rng_state()
    with torch.no_grad():
        a = model.score_all(batch, make_generator(3))
        b = model.score_all(batch, make_generator(3))
        c = model.score_all(batch, make_generator(4))
    assert torch.equal(torch.get_rng_state(), state), "score_all touched the global RNG"
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_diffurec_sampling_is_the_documented_ddim_update(eta):
    """The reverse process written out from the schedule and replayed on the same generator:
    x_T ~ N(0, I); at each sampled t = T−1, T−1−Δt, …: x̂_0 = f_θ(S, x_t, t) (λ drawn inside),
    ε̂ = (x_t − sqrt(ᾱ_t) x̂_0)/sqrt(1 − ᾱ_t), then the DDIM jump (Eq. 5 with η)
    x_prev = sqrt(ᾱ_prev) x̂_0 + sqrt(1 − ᾱ_prev − σ²) ε̂ + σ·noise, ᾱ_{−1} = 1."""
    torch.manual_seed(0)
    model = _diffurec(diffurec_lambda=0.5, eta=eta).eval()
    history = _prefix_batch()["items"][:, :-1]
    alpha_bar = torch.cumprod(1 - linear_betas(32).double(), 0).float()  # T = 32
    with torch.no_grad():
        sampled = model.sample(history, make_generator(3))
        g = make_generator(3)
        x = torch.randn(B, 16, generator=g)  # x_T
        ts = list(range(31, -1, -4))  # Δt = 4: 8 approximator calls
        for t, t_prev in zip(ts, ts[1:] + [-1]):
            x0 = model.reconstruct(history, x, torch.full((B,), t), g)
            ab, ab_prev = alpha_bar[t], alpha_bar[t_prev] if t_prev >= 0 else torch.tensor(1.0)
            eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
            sigma = eta * ((1 - ab_prev) / (1 - ab)).sqrt() * (1 - ab / ab_prev).sqrt()
            x = ab_prev.sqrt() * x0 + (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps
            if eta > 0:
                x = x + sigma * torch.randn(B, 16, generator=g)
    torch.testing.assert_close(sampled, x)


def test_diffurec_ignores_behaviors_and_the_mask_column():
    torch.manual_seed(0)
    model = _diffurec().eval()
    batch = _prefix_batch()
    other = {**batch, "behaviors": batch["behaviors"] % N_BEH + 1}
    with torch.no_grad():
        torch.testing.assert_close(model.score_all(other, make_generator(0)),
                                   model.score_all(batch, make_generator(0)))


# ---------------------------------------------------------------- learning on synthetic data
def _learner(name, data):
    """(model, training view, collate, epochs, lr) of each peer on synthetic-tiny, L = 20."""
    N, NB = data.n_items, data.n_behaviors
    config = _encoder_config(N, NB, d_model=32, n_layers=1, max_len=20, dropout=0.1)
    if name == "GRU4Rec":
        return GRU4Rec(GRU4RecConfig(n_items=N, d_model=32, dropout=0.1)), NextItemView(data, 20), None, 15, 1e-2
    if name == "BehaviorSASRec":
        return BehaviorSASRec(config), NextItemView(data, 20), None, 8, 2e-3
    if name == "MBSTR":
        collate = ClozeCollate(0.2, 0.0, data.mask_item, data.mask_behavior, make_generator(0), 0.0)
        model = MBSTR(MBSTRConfig(n_items=N, n_behaviors=NB, d_model=32, n_heads=2, n_layers=1,
                                  dropout=0.1, mbstr_buckets=32, mbstr_max_distance=40,
                                  mbstr_shared=3, mbstr_private=1))
        return model, ClozeView(data, 20), collate, 15, 2e-3
    diffusion = DiffuRecConfig(diffurec_T=32, diffurec_schedule="linear", diffurec_stride=4, eta=0.0,
                               diffurec_lambda=0.001)
    return DiffuRec(config, diffusion), PrefixView(data, 20, "train"), None, 3, 2e-3


@pytest.mark.parametrize("name", ["GRU4Rec", "BehaviorSASRec", "MBSTR", "DiffuRec"])
def test_peer_learns_and_beats_popularity(tiny, name):
    data, valid, pop_ndcg = tiny
    torch.manual_seed(0)
    model, view, collate, epochs, lr = _learner(name, data)
    best = best_validation(model, data, valid, view, epochs=epochs, lr=lr, collate=collate)
    assert best > 1.5 * pop_ndcg, f"{name}: {best:.4f} vs Pop {pop_ndcg:.4f}"
