"""Tests of PBAT (Su et al., ACM MM 2023): its Gaussian algebra, the behavior-aware attention
against a pair-by-pair computation, the personalization (the user acts on attention only
through pairs of different behaviors, and on the prediction through its pattern of the target
behavior), the Wasserstein head, the behavior-specific FFN, and a short run on tiny synthetic
data that must beat popularity.
"""
import torch
import torch.nn.functional as F
from learning import best_validation

from fatsmb_lib.data.batches import ClozeCollate, ClozeView, cloze_mask
from fatsmb_lib.models.pbat import PBAT, PBATConfig, sagp, tri_sagp, wasserstein
from fatsmb_lib.support.runtime import make_generator

N_ITEMS, N_BEH, N_USERS, B, L, D = 12, 3, 5, 3, 6, 8


def _pbat(n_layers=1, seed=0):
    torch.manual_seed(seed)
    return PBAT(PBATConfig(n_items=N_ITEMS, n_behaviors=N_BEH, n_users=N_USERS, d_model=D,
                           n_heads=2, n_layers=n_layers, dropout=0.0, max_len=L)).eval()


def _sequences(seed=0, behaviors_in=(1, 2, 3)):
    """(B, L) items and behaviors, rows left-padded by 0, 2 and 4."""
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, N_ITEMS + 1, (B, L), generator=g)
    choice = torch.tensor(behaviors_in)
    behaviors = choice[torch.randint(0, len(choice), (B, L), generator=g)]
    pad = torch.arange(L)[None, :] < torch.tensor([0, 2, 4])[:, None]
    return items.masked_fill(pad, 0), behaviors.masked_fill(pad, 0)


def _prefix_batch(seed=0, user=(0, 3, 4)):
    items, behaviors = _sequences(seed)
    target_behavior = torch.tensor([2, 1, 3])
    return {"items": torch.cat([items[:, 1:], torch.full((B, 1), N_ITEMS + 1)], dim=1),
            "behaviors": torch.cat([behaviors[:, 1:], target_behavior[:, None]], dim=1),
            "target": torch.tensor([5, 9, 2]), "target_behavior": target_behavior,
            "user": torch.tensor(user)}


# ---------------------------------------------------------------- Gaussian algebra
def test_gaussian_products_and_distance_closed_forms():
    g = torch.Generator().manual_seed(0)
    m1, m2, m3 = (torch.randn(4, D, generator=g) for _ in range(3))
    c1, c2, c3 = (torch.rand(4, D, generator=g) + 0.5 for _ in range(3))
    # SAGP of a distribution with itself is itself; a much sharper one dominates the mean
    for got, want in zip(sagp(m1, c1, m1, c1), (m1, c1)):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(sagp(m1, c1, m2, 1e-6 * c2)[0], m2, atol=1e-4, rtol=0)
    # TriSAGP: precision-weighted, by hand
    p1, p2, p3 = 1 / c1, 1 / c2, 1 / c3
    mean, cov = tri_sagp((m1, m2, m3), (c1, c2, c3))
    torch.testing.assert_close(cov, 1 / (p1 + p2 + p3))
    torch.testing.assert_close(mean, (p1 * m1 + p2 * m2 + p3 * m3) / (p1 + p2 + p3))
    # squared 2-Wasserstein of diagonal Gaussians
    want = ((m1 - m2) ** 2).sum(-1) + ((c1.sqrt() - c2.sqrt()) ** 2).sum(-1)
    torch.testing.assert_close(wasserstein(m1, c1, m2, c2), want)
    torch.testing.assert_close(wasserstein(m1, c1, m1, c1), torch.zeros(4))


# ---------------------------------------------------------------- behavior-aware attention
def _attention_inputs(model, items, behaviors, user):
    given = model.inputs(items, behaviors, model.user_rows({"items": items, "user": user}))
    return given, (given["x"], given["b"], given["relation"], given["position"], behaviors)


def test_attention_scores_match_the_pair_by_pair_equations():
    """Eqs. (7)-(9) written out for every (row, head, query i, key j): the query fused with
    the relation r[b_i, b_j] and ITS position, the key with the same relation and ITS position,
    scored by −W2 / sqrt(d_k). Catches a swapped pair, a wrong side's position, a mixed head."""
    model = _pbat()
    attn = model.blocks[0].attn
    items, behaviors = _sequences(1)
    user = torch.tensor([0, 3, 4])
    given, args = _attention_inputs(model, items, behaviors, user)
    with torch.no_grad():
        s, _ = attn.scores(*args)
        q_m, k_m, _ = attn.mean_qkv(torch.cat([given["x"][0], given["b"][0]], -1)).split(D, -1)
        q_c, k_c, _ = (F.elu(t) + 1 for t in
                       attn.cov_qkv(torch.cat([given["x"][1], given["b"][1]], -1)).split(D, -1))
        r_m, r_c = given["relation"]
        p_m, p_c = given["position"]
        H, dk = attn.n_heads, attn.d_head
        expected = torch.zeros_like(s)
        for row in range(B):
            for h in range(H):
                head = slice(h * dk, (h + 1) * dk)
                for i in range(L):
                    for j in range(L):
                        # pair index of (b_i, b_j); padding counts as behavior 1
                        a, c = (max(int(behaviors[row, t]), 1) - 1 for t in (i, j))
                        rel_m, rel_c = r_m[row, a, c, head], r_c[row, a, c, head]
                        Q = tri_sagp((q_m[row, i, head], attn.relation_q(rel_m),
                                      attn.position_q(p_m[i, head])),
                                     (q_c[row, i, head], rel_c, p_c[i, head]))
                        K = tri_sagp((k_m[row, j, head], attn.relation_k(rel_m),
                                      attn.position_k(p_m[j, head])),
                                     (k_c[row, j, head], rel_c, p_c[j, head]))
                        expected[row, h, i, j] = -wasserstein(*Q, *K) / dk**0.5
    torch.testing.assert_close(s, expected, atol=1e-5, rtol=1e-4)


def test_the_user_reaches_attention_only_through_pairs_of_different_behaviors():
    """ω_uac = −W2(P_ua, P_uc) is 0 for a = c, so the relation of a same-behavior pair is the
    same N(0, 1) for every user: a one-behavior sequence is attended alike for any user, a
    mixed one differently (the personalized patterns reach attention through ω)."""
    model = _pbat()
    attn = model.blocks[0].attn
    one, _ = _sequences(2)
    same = torch.where(one > 0, 2, 0)  # every real token behavior 2
    mixed = _sequences(2)[1]
    assert len(set(mixed[0].tolist())) > 1
    real = (one > 0)[:, None, :, None] & (one > 0)[:, None, None, :]  # (B, 1, L, L)

    def scores(behaviors, users):  # at the pairs of real tokens (padding is never attended)
        given = _attention_inputs(model, one, behaviors, torch.tensor(users))[1]
        return attn.scores(*given)[0].masked_select(real)

    with torch.no_grad():
        torch.testing.assert_close(scores(same, [0, 1, 2]), scores(same, [3, 4, 0]))
        assert not torch.allclose(scores(mixed, [0, 1, 2]), scores(mixed, [3, 4, 0]))


def test_relation_gradient_reaches_only_the_ordered_pairs_of_different_behaviors_that_occur():
    """A Cloze loss on sequences of behaviors 1 and 2 only: the relation tables get gradient at
    pairs (1, 2) and (2, 1) and nowhere else — not (1, 1) or (2, 2) (ω = 0 there), not any pair
    with behavior 3 (absent) — and the user tables only at the batch's users' rows."""
    model = _pbat(n_layers=2).train()
    items, behaviors = _sequences(3, behaviors_in=(1, 2))
    batch = cloze_mask(items, behaviors, 0.5, 0.0, N_ITEMS + 1, N_BEH + 1,
                       torch.Generator().manual_seed(0), 0.0)
    batch["user"] = torch.tensor([1, 3, 1])
    model.loss(batch).backward()
    for table in (model.pairs.mean.weight, model.pairs.cov.weight):
        touched = table.grad.abs().sum(-1).view(N_BEH, N_BEH) > 0  # [a-1, c-1]
        want = torch.zeros(N_BEH, N_BEH, dtype=torch.bool)
        want[0, 1] = want[1, 0] = True
        assert torch.equal(touched, want), touched
    touched_users = model.users.mean.weight.grad.abs().sum(-1) > 0  # row u + 1
    assert touched_users.nonzero()[:, 0].tolist() == [2, 4]


# ---------------------------------------------------------------- the prediction
def test_scores_are_minus_wasserstein_to_every_item_and_the_loss_is_their_cross_entropy():
    """(12)-(14) by hand: the [mask] column's distribution through the user's pattern of the
    target behavior, the head, then −W2 against each item's Gaussian from the raw tables; the
    Cloze loss is the cross-entropy of the same scores at the masked positions."""
    model = _pbat(n_layers=2)
    batch = _prefix_batch()
    with torch.no_grad():
        h_m, h_c = model.encode(batch["items"], batch["behaviors"], batch["user"] + 1)
        z_m = F.elu(model.head(h_m[:, -1]))
        z_c = F.elu(model.head(h_c[:, -1])) + 1
        e_m = model.items.mean.weight[1:-1]
        e_c = F.elu(model.items.cov.weight[1:-1]) + 1
        want = -wasserstein(z_m[:, None], z_c[:, None], e_m[None], e_c[None])  # (B, N)
        torch.testing.assert_close(model.score_all(batch), want, atol=1e-5, rtol=1e-5)

        items, behaviors = _sequences(4)
        cloze = cloze_mask(items, behaviors, 0.5, 0.0, N_ITEMS + 1, N_BEH + 1,
                           torch.Generator().manual_seed(1), 0.0)
        cloze["user"] = torch.tensor([2, 0, 4])
        h_m, h_c = model.encode(cloze["items"], cloze["behaviors"], cloze["user"] + 1)
        at = cloze["targets"] > 0
        z_m, z_c = F.elu(model.head(h_m[at])), F.elu(model.head(h_c[at])) + 1
        logits = -wasserstein(z_m[:, None], z_c[:, None], e_m[None], e_c[None])
        torch.testing.assert_close(model.loss(cloze),
                                   F.cross_entropy(logits, cloze["targets"][at] - 1))


def test_prediction_reads_the_users_pattern_of_the_target_behavior():
    """Same history, same [mask]: the scores change with the target behavior and with the user;
    a batch without users scores as the unknown user (row 0)."""
    model = _pbat(n_layers=2)
    batch = _prefix_batch()
    with torch.no_grad():
        scores = model.score_all(batch)
        other_behavior = {**batch, "behaviors": batch["behaviors"].clone(),
                          "target_behavior": batch["target_behavior"] % N_BEH + 1}
        other_behavior["behaviors"][:, -1] = other_behavior["target_behavior"]
        assert not torch.isclose(model.score_all(other_behavior), scores).all(-1).any()
        other_user = {**batch, "user": (batch["user"] + 1) % N_USERS}
        assert not torch.isclose(model.score_all(other_user), scores).all(-1).any()
        anonymous = {k: v for k, v in batch.items() if k != "user"}
        unknown = {**batch, "user": torch.full((B,), -1)}  # table row u + 1 = 0
        torch.testing.assert_close(model.score_all(anonymous), model.score_all(unknown))


# ---------------------------------------------------------------- behavior-specific FFN
def test_ffn_uses_each_tokens_own_behavior_weights_and_zeroes_padding():
    model = _pbat()
    ffn = model.blocks[0].ffn
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for w in (ffn.w1.bias, ffn.w2.bias, ffn.ln_weight, ffn.ln_bias):
            w.normal_(generator=g)
        x = torch.randn(2, B, L, D, generator=g)
        behaviors = _sequences(6)[1].expand(2, B, L)
        got = ffn(x, behaviors)
        for index in torch.cartesian_prod(torch.arange(2), torch.arange(B), torch.arange(L)):
            t, b = x[tuple(index)], int(behaviors[tuple(index)])
            if b == 0:
                assert (got[tuple(index)] == 0).all()
                continue
            hidden = F.elu(t @ ffn.w1.weight[b - 1] + ffn.w1.bias[b - 1])
            y = hidden @ ffn.w2.weight[b - 1] + ffn.w2.bias[b - 1]
            y = F.layer_norm(y, (D,)) * ffn.ln_weight[b - 1] + ffn.ln_bias[b - 1]
            torch.testing.assert_close(got[tuple(index)], y, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- it learns
def test_pbat_learns_and_beats_popularity(tiny):
    data, valid, pop_ndcg = tiny
    torch.manual_seed(0)
    model = PBAT(PBATConfig(n_items=data.n_items, n_behaviors=data.n_behaviors,
                            n_users=data.n_users, d_model=32, n_heads=2, n_layers=1, dropout=0.1,
                            max_len=20))
    view = ClozeView(data, 20)
    collate = ClozeCollate(0.2, 0.0, data.mask_item, data.mask_behavior, make_generator(0), 0.0)
    epochs = 8
    best = best_validation(model, data, valid, view, epochs=epochs, lr=5e-3, collate=collate)
    assert best > 1.5 * pop_ndcg, f"{best:.4f} vs Pop {pop_ndcg:.4f}"
