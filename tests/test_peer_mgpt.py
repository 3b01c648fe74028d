"""Tests of M-GPT (fatsmb_lib.models.mgpt): its two mechanisms against hand-computed small cases
and the properties that define them, how its orders are combined, where the target behavior
enters, and one short run on tiny synthetic data that beats popularity.

- the interaction-level graph: an edge reads the item AND the behavior of both ends (the same
  item under two behaviors is two nodes), it ignores order, and its convolution is Â(hW + c);
- the multi-grained session facet: weights computed as written, summing to 1 inside each
  session, blind to other sessions, and moved by the session's newest interactions (its
  queries);
- the objective: the sum over orders of the cross-entropy plus λ‖A‖₁; scores: the best order.
"""
import torch
import torch.nn.functional as F
from learning import best_validation

from fatsmb_lib.data.batches import ClozeCollate, ClozeView
from fatsmb_lib.models.mgpt import (
    MGPT,
    InteractionGraph,
    MGPTConfig,
    SessionAttention,
    interaction_adjacency,
    normalize_adjacency,
)
from fatsmb_lib.support.runtime import make_generator

N_ITEMS, N_BEH, B, L = 12, 3, 3, 8


def _mgpt(hide_target=False, n_orders=3, l1=1e-3, **sizes):
    config = dict(n_items=N_ITEMS, n_behaviors=N_BEH, d_model=16, n_heads=2, n_layers=2,
                  dropout=0.0, max_len=L, mgpt_orders=n_orders, mgpt_sessions=2, mgpt_queries=3,
                  mgpt_fine_sessions=4, mgpt_fine_queries=2, mgpt_lp=4.0, mgpt_l1=l1,
                  mgpt_hide_target=hide_target)
    return MGPT(MGPTConfig(**{**config, **sizes}))


def _prefix_batch(seed=0):
    """(B, L) left-padded histories (0, 2 and 5 padding), then [mask] with the target behavior."""
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, N_ITEMS + 1, (B, L), generator=g)
    behaviors = torch.randint(1, N_BEH + 1, (B, L), generator=g)
    pad = torch.arange(L)[None, :] < torch.tensor([0, 2, 5])[:, None]
    items, behaviors = items.masked_fill(pad, 0), behaviors.masked_fill(pad, 0)
    items[:, -1] = N_ITEMS + 1
    behaviors[:, -1] = torch.tensor([2, 1, 3])
    return {"items": items, "behaviors": behaviors, "target": torch.tensor([5, 9, 2]),
            "target_behavior": behaviors[:, -1].clone()}


# ---------------------------------------------------------------- the interaction-level graph
def test_adjacency_is_hand_computed_and_reads_item_and_behavior_of_both_ends():
    """A_ij = σ(Σ_d e_id b_id e_jd b_jd) between real interactions. Interactions 1 and 2 hold
    the same item: under different behaviors their edges to interaction 3 differ, under the
    same behavior they agree. Â = D^{-1/2}(A + I), row by row."""
    g = torch.Generator().manual_seed(0)
    item_table, behavior_table = torch.randn(4, 5, generator=g), torch.randn(3, 5, generator=g)
    items, behaviors = torch.tensor([[0, 2, 2, 3]]), torch.tensor([[0, 1, 2, 1]])
    real = items > 0
    e, b = item_table[items] * real[..., None], behavior_table[behaviors] * real[..., None]
    A = interaction_adjacency(e, b, real)
    for i in range(4):
        for j in range(4):
            edge = torch.sigmoid((e[0, i] * b[0, i] * e[0, j] * b[0, j]).sum())
            torch.testing.assert_close(A[0, i, j], edge if i and j else torch.tensor(0.0))
    assert not torch.isclose(A[0, 1, 3], A[0, 2, 3])  # same item, other behavior: other edges
    same = interaction_adjacency(e, behavior_table[torch.tensor([[0, 1, 1, 1]])], real)
    torch.testing.assert_close(same[0, 1, 3], same[0, 2, 3])
    A_hat = normalize_adjacency(A)
    tilde = A[0] + torch.eye(4)
    torch.testing.assert_close(A_hat[0], tilde / tilde.sum(1, keepdim=True).sqrt())


def test_graph_orders_are_repeated_convolutions_and_ignore_the_order_of_interactions():
    """h⁰ = e + b, h^k = LeakyReLU(Â(h^{k-1}W + c)); permuting the interactions permutes every
    order the same way (a graph over the sequence's interactions, not a chain)."""
    torch.manual_seed(0)
    graph = InteractionGraph(6, n_orders=3, dropout=0.0)
    e, b = torch.randn(2, 5, 6), torch.randn(2, 5, 6)
    real = torch.tensor([[True] * 5, [False, False, True, True, True]])
    e, b = e * real[..., None], b * real[..., None]
    orders, A = graph(e, b, real)
    A_hat = normalize_adjacency(A)
    h = e + b
    torch.testing.assert_close(orders[0], h)
    for k in (1, 2):
        h = F.leaky_relu(A_hat @ (h @ graph.gcn.weight.T + graph.gcn.bias))
        torch.testing.assert_close(orders[k], h)
    perm = torch.tensor([4, 2, 0, 3, 1])
    permuted, _ = graph(e[:, perm], b[:, perm], real[:, perm])
    torch.testing.assert_close(permuted, orders[:, :, perm])


# ---------------------------------------------------------------- the multi-grained sessions
def _session_attention(n_sessions=2, n_queries=2):
    torch.manual_seed(0)
    attention = SessionAttention(4, 1, n_sessions, n_queries, lp=4.0, dropout=0.0)
    for parameter in attention.parameters():  # away from the near-zero initialisation
        torch.nn.init.normal_(parameter, std=0.5)
    return attention


def test_session_weights_are_hand_computed():
    """Sessions of l = 3 (the first one padded at its front); queries c_g = W_g Σ of the
    session's g newest states; a_gj = softmax_j 2σ(q_g·k_j), α_j = softmax_j 2(Σ_g a_gj^p)^{1/p}
    over the session's real positions."""
    attention = _session_attention()
    x = torch.randn(1, 6, 4)
    real = torch.tensor([[False, True, True, True, True, True]])
    alpha = attention.weights(x, real)  # (1, 2, 3, 1)
    W_q, W_k = attention.q, attention.k
    for s, positions in enumerate(([1, 2], [3, 4, 5])):
        newest = [x[0, positions[-1]], x[0, positions[-2]]]
        queries = [W_q(attention.query_weight[g].T @ sum(newest[: g + 1]) + attention.query_bias[g])
                   for g in range(2)]
        keys = W_k(x[0, positions])  # (n, 4)
        a = torch.stack([(2 * torch.sigmoid(keys @ q)).softmax(0) for q in queries])  # (G, n)
        want = (2 * a.pow(4).sum(0).pow(0.25)).softmax(0)
        got = alpha[0, s, 3 - len(positions):, 0]
        torch.testing.assert_close(got, want)
    assert alpha[0, 0, 0, 0] == 0  # padding


def test_session_facet_is_local_to_its_session_and_read_by_its_newest_interactions():
    """Changing the first session's states leaves the second session's weights and outputs
    unchanged; changing the newest state of a session in a direction its key cannot see (so
    only through the session's queries) moves the weights of the session's positions."""
    attention = _session_attention()
    with torch.no_grad():
        attention.k.weight[:, 3] = 0  # keys blind to coordinate 3
    x, p = torch.randn(2, 6, 4), torch.zeros(1, 6, 4)
    real = torch.ones(2, 6, dtype=torch.bool)
    alpha, y = attention.weights(x, real), attention(x, p, real)
    torch.testing.assert_close(alpha.sum(2), torch.ones(2, 2, 1))
    first = x.clone()
    first[:, :3] = torch.randn(2, 3, 4)
    torch.testing.assert_close(attention.weights(first, real)[:, 1], alpha[:, 1])
    torch.testing.assert_close(attention(first, p, real)[:, 3:], y[:, 3:])
    newest = x.clone()
    newest[:, 5, 3] += 1.0
    moved = attention.weights(newest, real)
    assert not torch.allclose(moved[:, 1], alpha[:, 1], atol=1e-4)
    torch.testing.assert_close(moved[:, 0], alpha[:, 0])


# ---------------------------------------------------------------- orders, objective, protocol
def test_scores_are_the_best_order_and_the_loss_sums_the_orders():
    """score = max_k h^k·Eᵀ at the [mask] column; loss = Σ_k CE(h^k·Eᵀ) at the masked
    positions + λ Σ_ij A_ij per sequence (F.cross_entropy on the (M, N) logits)."""
    torch.manual_seed(0)
    model = _mgpt().eval()
    batch = _prefix_batch()
    items = model.item_embedding.weight[1 : N_ITEMS + 1]
    with torch.no_grad():
        h, A = model.encode(batch["items"], batch["behaviors"])  # (K, B, L, D)
        torch.testing.assert_close(model.score_all(batch), (h[:, :, -1] @ items.T).amax(0))
        masked = torch.zeros(B, L, dtype=torch.bool)
        masked[:, [4, 7]] = True
        targets = torch.tensor([[3], [7], [11]]) * masked
        want = sum(F.cross_entropy(h[k][masked] @ items.T, targets[masked] - 1) for k in range(3))
        want = want + 1e-3 * A.sum() / B
        loss = model.loss({**batch, "targets": targets})
    torch.testing.assert_close(loss, want)
    best_order = (h[:, :, -1] @ items.T).argmax(0)  # (B, N): the max is not one order's
    assert best_order.unique().numel() > 1


def test_target_behavior_enters_through_the_mask_column_unless_hidden():
    """The [mask] column's behavior (the row's target behavior) changes that row's scores;
    with ``mgpt_hide_target`` (the authors' behavior-free [mask]) it changes nothing."""
    batch = _prefix_batch()
    other = {**batch, "behaviors": batch["behaviors"].clone()}
    other["behaviors"][0, -1] = 3  # row 0: target behavior 2 -> 3
    for hide, changes in ((False, True), (True, False)):
        torch.manual_seed(0)
        model = _mgpt(hide_target=hide).eval()
        with torch.no_grad():
            scores, scores2 = model.score_all(batch), model.score_all(other)
        assert (not torch.allclose(scores[0], scores2[0])) is changes
        torch.testing.assert_close(scores2[1:], scores[1:])


def test_graph_gets_gradient_from_the_objective_and_its_sparsity_penalty():
    """The graph convolution learns through the higher orders; the behavior table through
    A (and h⁰); the ‖A‖₁ penalty alone pushes the graph's edges down."""
    torch.manual_seed(0)
    model = _mgpt()
    batch = _prefix_batch()
    masked = torch.zeros(B, L, dtype=torch.bool)
    masked[:, -1] = True
    model.loss({**batch, "targets": torch.tensor([[3], [7], [11]]) * masked}).backward()
    assert model.graph.gcn.weight.grad.abs().sum() > 0
    assert model.behavior_embedding.weight.grad[1:N_BEH + 1].abs().sum() > 0
    # at the N(0, 0.02) initialisation A ≈ σ(0) = 1/2 everywhere: move to unit-scale tables
    for table in (model.item_embedding, model.behavior_embedding):
        torch.nn.init.normal_(table.weight)
    model.zero_grad()
    _, A = model.encode(batch["items"], batch["behaviors"])
    (model.config.mgpt_l1 * A.sum()).backward()
    with torch.no_grad():
        for table in (model.item_embedding, model.behavior_embedding):
            table.weight -= 10.0 * table.weight.grad
        _, A2 = model.encode(batch["items"], batch["behaviors"])
    assert A2.sum() < A.sum() - 0.1


# ---------------------------------------------------------------- learning on synthetic data
def test_mgpt_learns_and_beats_popularity(tiny):
    data, valid, pop_ndcg = tiny
    torch.manual_seed(0)
    model = MGPT(MGPTConfig(n_items=data.n_items, n_behaviors=data.n_behaviors, d_model=32,
                            n_heads=2, n_layers=1, dropout=0.1, max_len=20, mgpt_orders=2,
                            mgpt_sessions=2, mgpt_queries=4, mgpt_fine_sessions=4,
                            mgpt_fine_queries=2, mgpt_lp=4.0, mgpt_l1=6.4e-4,
                            mgpt_hide_target=False))
    view = ClozeView(data, 20)
    collate = ClozeCollate(0.2, 0.0, data.mask_item, data.mask_behavior, make_generator(0), 0.0)
    epochs = 15
    best = best_validation(model, data, valid, view, epochs=epochs, lr=2e-3, collate=collate)
    assert best > 1.5 * pop_ndcg, f"{best:.4f} vs Pop {pop_ndcg:.4f}"
