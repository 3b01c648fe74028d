"""Tests of MISSL (fatsmb_lib.models.missl).

The mechanisms that define it: the multi-interest extraction (behavior-specific interests read
only their behavior's items, shared ones read all, each keeps its top-κ items; fusion assigns
every item to one interest of its behavior and one shared interest) and the self-supervised
InfoNCE losses that tie items and interests, written out by hand and traced to the embedding
table the recommender scores with. Then causality, the loss's composition and one short run
on tiny synthetic data that must beat popularity.
"""
import math

import torch
import torch.nn.functional as F
from learning import best_validation

from fatsmb_lib.data.batches import NextItemView
from fatsmb_lib.models.missl import MISSL, InterestBlock, MISSLConfig, keep_top, topk_size

N_ITEMS, N_BEH, K, B, L, D = 12, 3, 4, 3, 8, 16


def _config(**changes):
    values = {"n_items": N_ITEMS, "n_behaviors": N_BEH, "d_model": D, "n_heads": 2,
              "n_layers": 2, "dropout": 0.0, "max_len": L, "missl_interests": K,
              "missl_interest_layers": 2, "missl_epsilon": 0.5, "missl_tau": 0.5,
              "missl_lambda_behavior": 1.0, "missl_lambda_ib": 0.05, "missl_lambda_inter": 0.05,
              "missl_lambda_intra": 0.05}
    return MISSLConfig(**{**values, **changes})


def _model(**changes):
    torch.manual_seed(0)
    return MISSL(_config(**changes)).eval()


def _sequences(seed=0):
    """(B, L) items and behaviors, rows left-padded by 0, 2 and 5."""
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, N_ITEMS + 1, (B, L), generator=g)
    behaviors = torch.randint(1, N_BEH + 1, (B, L), generator=g)
    pad = torch.arange(L)[None, :] < torch.tensor([0, 2, 5])[:, None]
    return items.masked_fill(pad, 0), behaviors.masked_fill(pad, 0)


def _next_item_batch(seed=0):
    items, behaviors = _sequences(seed)
    real = items > 0
    targets = torch.cat([items[:, 1:], torch.tensor([[4], [7], [1]])], dim=1) * real
    target_behaviors = torch.cat([behaviors[:, 1:], torch.tensor([[2], [1], [3]])], dim=1) * real
    return {"items": items, "behaviors": behaviors, "targets": targets,
            "target_behaviors": target_behaviors}


def _block(n_heads=1, epsilon=0.5):
    torch.manual_seed(0)
    block = InterestBlock(D, n_heads, N_BEH, K, L, epsilon, 0.0).eval()
    for p in block.parameters():  # biases too, so no map is the identity on zero
        torch.nn.init.normal_(p, std=0.3)
    return block


# ---------------------------------------------------------------- extraction (2)
def test_topk_size_is_the_authors_log_bucket():
    """κ(n) = n below 6, then 6 + ⌊log(4n/24) / log(4·50/24) · 6⌋, capped at 11 (L = 50)."""
    n = torch.arange(0, 60)
    want = [m if m < 6 else min(6 + math.floor(math.log(4 * m / 24) / math.log(200 / 24) * 6), 11)
            for m in range(60)]
    assert topk_size(n, 50).tolist() == want
    assert want[5] == 5 and want[20] == 9 and want[50] == 11


def test_keep_top_keeps_the_k_largest_per_row():
    p = torch.tensor([[0.1, 0.5, 0.0, 0.3, 0.1], [0.2, 0.2, 0.6, 0.0, 0.0]])
    torch.testing.assert_close(keep_top(p, torch.tensor([2, 1])),
                               torch.tensor([[0.0, 0.5, 0.0, 0.3, 0.0], [0.0, 0.0, 0.6, 0.0, 0.0]]))
    torch.testing.assert_close(keep_top(p, 1),
                               torch.tensor([[0.0, 0.5, 0, 0, 0], [0, 0, 0.6, 0, 0]]))
    assert keep_top(p, torch.tensor([0, 0])).abs().sum() == 0


def test_extraction_matches_its_equation_written_out():
    """One head, one interest at a time: softmax over the items it may read (its behavior's,
    or all for a shared interest), keep the top κ(n) weights, sum the values."""
    block = _block()
    g = torch.Generator().manual_seed(1)
    e, c = torch.randn(B, L, D, generator=g), torch.randn(B, (N_BEH + 1) * K, D, generator=g)
    _, behaviors = _sequences()
    with torch.no_grad():
        out = block.extract(e, behaviors, c, block.eligible(behaviors))
        q = block.extract_q(c)
        k_s, v_s = block.extract_kv_specific(e, behaviors).split(D, -1)
        k_a, v_a = block.extract_kv_shared(e).split(D, -1)
        for row in range(B):
            for i in range((N_BEH + 1) * K):
                group = i // K + 1
                if group <= N_BEH:
                    items = [j for j in range(L) if behaviors[row, j] == group]
                    keys, values = k_s[row, items], v_s[row, items]
                else:
                    items = [j for j in range(L) if behaviors[row, j] > 0]
                    keys, values = k_a[row, items], v_a[row, items]
                if not items:
                    torch.testing.assert_close(out[row, i], torch.zeros(D))
                    continue
                w = (keys @ q[row, i] / math.sqrt(D)).softmax(0)
                kappa = int(topk_size(torch.tensor(len(items)), L))
                w = w * (w >= w.sort(descending=True).values[kappa - 1])
                torch.testing.assert_close(out[row, i], w @ values)


def test_behavior_specific_interests_read_only_their_behavior():
    """Changing an item of behavior 2 moves the interests of group 2 and the shared ones, and
    not those of behaviors 1 and 3; changing a padded position moves nothing."""
    block = _block(n_heads=2)
    g = torch.Generator().manual_seed(2)
    e, c = torch.randn(B, L, D, generator=g), torch.randn(B, (N_BEH + 1) * K, D, generator=g)
    behaviors = torch.tensor([[1, 2, 3, 1, 2, 3, 1, 2]] * B)
    behaviors[2, :5] = 0  # row 2: five padded positions
    with torch.no_grad():
        out = block.extract(e, behaviors, c, block.eligible(behaviors))
        moved = e.clone()
        moved[0, 4] += 1.0  # row 0, an item of behavior 2
        moved[2, 1] += 1.0  # row 2, padding
        out2 = block.extract(moved, behaviors, c, block.eligible(behaviors))
    changed = (out2 - out).abs().amax(-1) > 1e-6  # (B, I)
    group = torch.arange((N_BEH + 1) * K) // K + 1
    assert changed[0, group == 2].all() and changed[0, group == N_BEH + 1].all()
    assert not changed[0, (group == 1) | (group == 3)].any()
    assert not changed[1:].any()


# ---------------------------------------------------------------- fusion (4)
def test_fusion_assigns_each_item_one_interest_of_its_behavior_and_one_shared():
    """s_j = argmax of head 0's scores over b_j's K interests, a_j over the K shared ones."""
    block = _block(n_heads=2)
    g = torch.Generator().manual_seed(3)
    e, c = torch.randn(B, L, D, generator=g), torch.randn(B, (N_BEH + 1) * K, D, generator=g)
    items, behaviors = _sequences()
    real = items > 0
    with torch.no_grad():
        fused, s, a = block.fuse(e, behaviors, c, block.eligible(behaviors))
        q = block.fuse_q(e, behaviors)[..., : D // 2]  # head 0
        keys = block.fuse_kv(c)[..., : D // 2]
    for row in range(B):
        for j in range(L):
            if not real[row, j]:
                continue
            b = int(behaviors[row, j])
            scores = keys[row] @ q[row, j]
            assert int(s[row, j]) == (b - 1) * K + int(scores[(b - 1) * K : b * K].argmax())
            assert int(a[row, j]) == int(scores[N_BEH * K :].argmax())
    assert not fused[~real].any(), "a padded item meets no interest"


# ---------------------------------------------------------------- self-supervision (10)-(11)
def _reference_interest_losses(e, c, s, a, behaviors, tau):
    """Equations (10)-(11) one row, one item and one interest at a time: item-side terms are
    means over the real items, interest-side terms means over all interests of their kind."""
    e, c = F.normalize(e, dim=-1), F.normalize(c, dim=-1)
    n_s = N_BEH * K
    item_s = item_a = to_items_s = to_items_a = intra_s = intra_a = 0.0
    n_items = 0
    for r in range(B):
        real = [j for j in range(L) if behaviors[r, j] > 0]
        cs, ca = c[r, :n_s], c[r, n_s:]
        for j in real:  # item -> its interests, against items that chose other interests
            b = int(behaviors[r, j])
            others = [i for i in real if s[r, i] != s[r, j] and a[r, i] != a[r, j]]
            pairs = [e[r, j] @ e[r, i] for i in others]
            to_others = torch.stack(pairs) if pairs else torch.zeros(0)
            lp = torch.cat([cs[(b - 1) * K : b * K] @ e[r, j], to_others]).div(tau).log_softmax(0)
            item_s = item_s - lp[int(s[r, j]) - (b - 1) * K]
            lp = torch.cat([ca @ e[r, j], to_others]).div(tau).log_softmax(0)
            item_a = item_a - lp[int(a[r, j])]
            n_items += 1
        for m in range(n_s):  # interest -> its items, against the other interests of its kind
            others = torch.stack([cs[m] @ cs[x] for x in range(n_s) if x != m])
            lp = torch.cat([e[r, real] @ cs[m], others]).div(tau).log_softmax(0)
            to_items_s = to_items_s - sum(lp[n] for n, j in enumerate(real) if s[r, j] == m)
            chosen = {int(a[r, j]) for j in real if s[r, j] == m}  # (11) specific -> shared
            lp = torch.cat([ca @ cs[m], others]).div(tau).log_softmax(0)
            intra_s = intra_s - sum(lp[x] for x in chosen)
        for k in range(K):
            others = torch.stack([ca[k] @ ca[x] for x in range(K) if x != k])
            lp = torch.cat([e[r, real] @ ca[k], others]).div(tau).log_softmax(0)
            to_items_a = to_items_a - sum(lp[n] for n, j in enumerate(real) if a[r, j] == k)
            chosen = {int(s[r, j]) for j in real if a[r, j] == k}  # (11) shared -> specific
            lp = torch.cat([cs @ ca[k], others]).div(tau).log_softmax(0)
            intra_a = intra_a - sum(lp[x] for x in chosen)
    inter = (item_s + item_a) / n_items + to_items_s / (B * n_s) + to_items_a / (B * K)
    return inter, intra_s / (B * n_s) + intra_a / (B * K)


def test_interest_losses_match_infonce_written_out():
    """L_inter and L_intra against a loop over rows, items and interests, with the interests
    and assignments the model extracted."""
    model = _model()
    items, behaviors = _sequences()
    with torch.no_grad():
        e, _, _ = model.encode(items, behaviors)
        c, s, a = model.interests(e, behaviors)
        l_inter, l_intra = model.interest_losses(e, behaviors)
    real = behaviors > 0
    assert ((s[real] // K) == behaviors[real] - 1).all() and (a[real] < K).all()
    inter, intra = _reference_interest_losses(e, c, s, a, behaviors, tau=0.5)
    torch.testing.assert_close(l_inter, inter)
    torch.testing.assert_close(l_intra, intra)
    assert intra > 0


def test_interest_losses_shape_the_table_the_recommender_scores_with():
    """The self-supervised losses reach the item rows of the window (and no other item), the
    behavior and position tables and the prototypes: the interests act on the scores through
    the tied item table."""
    model = _model()
    model.train()
    items, behaviors = _sequences()
    e, _, _ = model.encode(items, behaviors)
    l_inter, l_intra = model.interest_losses(e, behaviors)
    (l_inter + l_intra).backward()
    grad = model.item_embedding.weight.grad.abs().sum(-1)  # (N+2,)
    seen = torch.zeros(N_ITEMS + 2, dtype=torch.bool)
    seen[items[items > 0]] = True
    assert (grad[seen] > 0).all() and (grad[~seen] == 0).all()
    for p in (model.behavior_embedding.weight, model.position.weight, model.interests.prototypes,
              model.interests.block.mixing[0].weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    for block in model.blocks:  # the two-stream recommender is not on this path
        assert all(p.grad is None for p in block.parameters())


# ---------------------------------------------------------------- the recommender (6)-(9), (12)
def test_item_behavior_contrast_is_nt_xent_written_out():
    model = _model()
    g = torch.Generator().manual_seed(4)
    h, y = torch.randn(3, D, generator=g), torch.randn(3, D, generator=g)
    views = F.normalize(torch.cat([h, y]), dim=-1)
    want = 0.0
    for i in range(6):
        logits = torch.stack([views[i] @ views[j] / 0.5 for j in range(6) if j != i])
        partner = (i + 3) % 6
        want = want - logits.log_softmax(0)[partner - (partner > i)]
    torch.testing.assert_close(model.item_behavior_contrast(h, y), want / 6)


def test_loss_is_the_weighted_sum_of_its_terms():
    """(12): with every λ at 0 the loss is L_item alone; each λ adds its own term."""
    batch = _next_item_batch()
    model = _model()
    with torch.no_grad():
        e, h, y = model.encode(batch["items"], batch["behaviors"])
        torch.manual_seed(5)
        l_item, l_beh, l_ib = model.behavior_aware_losses(h, y, batch)
        l_inter, l_intra = model.interest_losses(e, batch["behaviors"])
        torch.manual_seed(5)
        total = model.loss(batch)
        model.config.missl_lambda_behavior = model.config.missl_lambda_ib = 0.0
        model.config.missl_lambda_inter = model.config.missl_lambda_intra = 0.0
        torch.manual_seed(5)
        alone = model.loss(batch)
    torch.testing.assert_close(alone, l_item)
    torch.testing.assert_close(total, l_item + l_beh + 0.05 * (l_ib + l_inter + l_intra))
    has = batch["targets"] > 0
    table = model.item_embedding.weight[1 : N_ITEMS + 1]  # (N, D) the tied table
    logits = model.item_head(h[has]) @ table.T + model.item_bias
    torch.testing.assert_close(l_item, F.cross_entropy(logits, batch["targets"][has] - 1))
    assert all(t > 0 for t in (l_beh, l_ib, l_inter, l_intra))


def test_two_streams_are_causal_and_scores_ignore_the_mask_column():
    model = _model()
    items, behaviors = _sequences()
    with torch.no_grad():
        _, h, y = model.encode(items, behaviors)
        later_items, later_beh = items.clone(), behaviors.clone()
        later_items[:, 6:] = later_items[:, 6:] % N_ITEMS + 1
        later_beh[:, 6:] = later_beh[:, 6:] % N_BEH + 1
        _, h2, y2 = model.encode(later_items, later_beh)
        torch.testing.assert_close(h2[:, :6], h[:, :6])
        torch.testing.assert_close(y2[:, :6], y[:, :6])
        assert not torch.allclose(h2[:, 6:], h[:, 6:])
        prefix = {"items": torch.cat([items[:, 1:], torch.full((B, 1), N_ITEMS + 1)], 1),
                  "behaviors": torch.cat([behaviors[:, 1:], torch.tensor([[1], [2], [3]])], 1),
                  "target_behavior": torch.tensor([1, 2, 3])}
        other = {"items": prefix["items"], "target_behavior": torch.tensor([3, 3, 1]),
                 "behaviors": torch.cat([behaviors[:, 1:], torch.tensor([[3], [3], [1]])], 1)}
        torch.testing.assert_close(model.score_all(other), model.score_all(prefix))
        torch.testing.assert_close(model.score_all(prefix), model.item_logits(
            model.encode(prefix["items"], prefix["behaviors"])[1][:, -2]))


# ---------------------------------------------------------------- learning on synthetic data
def test_missl_learns_and_beats_popularity(tiny):
    data, valid, pop_ndcg = tiny
    torch.manual_seed(0)
    model = MISSL(_config(n_items=data.n_items, n_behaviors=data.n_behaviors, d_model=32,
                          n_layers=1, dropout=0.1, max_len=20, missl_tau=1.0,
                          missl_interest_layers=1))
    view = NextItemView(data, 20)
    best = best_validation(model, data, valid, view, epochs=3, lr=1e-2)
    assert best > 1.5 * pop_ndcg, f"{best:.4f} vs Pop {pop_ndcg:.4f}"
