"""Tests of the graph baselines, MBGCN and MB-GMN, and of what they stand on: the training
parts' graph (``data.graph``: never a validation or test item), its sparse product, the
registry's ``inputs`` (constructor arguments that are not hashed).

MBGCN: its score written out from the paper's equations with loops over users, behaviors and
neighbours, on a hand-made graph. MB-GMN: behavior b's message passing reads only behavior b's
edges, and the meta prediction network is the per-pair MLP its docstring writes. Then one short
run per model on tiny synthetic data checks that it learns (beats popularity).
"""
import pytest
import torch
from learning import best_validation

from fatsmb_lib.data.batches import InteractionView
from fatsmb_lib.data.graph import BehaviorGraph, SparseProduct, training_graph
from fatsmb_lib.models.mbgcn import MBGCN, MBGCNConfig
from fatsmb_lib.models.mbgmn import MBGMN, MBGMNConfig, leaky
from fatsmb_lib.training.peers import train_baseline
from fatsmb_lib.training.run import open_run

# a hand-made graph: 4 users, 6 items, 2 behaviors (user, item id, behavior id), one repeat
EDGES = [(0, 1, 1), (0, 2, 1), (0, 3, 2), (1, 2, 1), (1, 4, 1), (1, 2, 2), (1, 5, 2),
         (2, 1, 2), (2, 6, 1), (2, 6, 1), (3, 3, 1), (3, 5, 1), (3, 6, 2)]
U, N, K = 4, 6, 2


def _graph(edges=EDGES):
    return BehaviorGraph.from_interactions(*zip(*edges), n_users=U, n_items=N, n_behaviors=K)


# ---------------------------------------------------------------- the graph
def test_the_graph_holds_the_training_interactions_and_never_a_valid_or_test_item(tiny):
    data = tiny[0]
    split, graph = data.split(), training_graph(data)
    edges = set(zip(graph.user.tolist(), graph.item.tolist(), graph.behavior.tolist()))
    assert edges == set(zip(split.train_users.tolist(), split.train_items.tolist(),
                            split.train_behaviors.tolist()))
    assert len(edges) == len(graph.user)                              # repeats merged
    held_out = 0
    for u in range(data.n_users):  # a held-out item the user never met in training: no edge
        own = set(data.seq_items[split.train_start[u]:split.train_end[u]].tolist())
        for item in (split.valid_items[u], split.test_items[u]):
            if item not in own:
                held_out += 1
                assert not ((graph.user == u) & (graph.item == int(item))).any()
    assert held_out > data.n_users  # most held-out items are new to their user: not vacuous


def test_graph_matrices_are_the_documented_normalisations():
    g = _graph()
    A = torch.zeros(K, U, N)                                   # dense 0/1 per behavior
    for u, i, b in EDGES:
        A[b - 1, u, i - 1] = 1.0
    du, di = A.sum(2, keepdim=True), A.sum(1, keepdim=True)     # (K, U, 1), (K, 1, N)
    mean = torch.nan_to_num(A / du)
    sym = torch.nan_to_num(A / (du * di).sqrt())
    torch.testing.assert_close(g.user_item("mean").to_dense(), mean.reshape(K * U, N))
    torch.testing.assert_close(g.user_item("sym").to_dense(), sym.reshape(K * U, N))
    torch.testing.assert_close(g.item_user("sym").to_dense(), sym.transpose(1, 2).reshape(K * N, U))
    torch.testing.assert_close(g.block("sym").to_dense(), torch.block_diag(*sym))
    union = (A.sum(0) > 0).float().T                            # (N, U)
    torch.testing.assert_close(g.items_users().to_dense(),
                               torch.nan_to_num(union / union.sum(1, True)))
    co = torch.einsum("kui,kuj->kij", A, A).clamp(max=1) * (1 - torch.eye(N))  # a user; i ≠ j
    torch.testing.assert_close(g.item_item().to_dense(),
                               torch.nan_to_num(co / co.sum(2, keepdim=True)).reshape(K * N, N))


def test_sparse_product_matches_the_dense_one_values_and_gradients():
    matrix = _graph().block("sym")
    x = torch.randn(K * N, 3, dtype=torch.float32, requires_grad=True)
    y = SparseProduct(matrix)(x)
    ref = matrix.to_dense() @ x
    torch.testing.assert_close(y, ref)
    g = torch.randn_like(y)
    torch.testing.assert_close(torch.autograd.grad(y, x, g)[0], torch.autograd.grad(ref, x, g)[0])


# ---------------------------------------------------------------- MBGCN
def _mbgcn(lam=0.7, dropout=0.0):
    torch.manual_seed(0)
    return MBGCN(MBGCNConfig(n_items=N, n_behaviors=K, d_model=4, mbgcn_lambda=lam,
                             mbgcn_message_dropout=dropout, mbgcn_node_dropout=dropout), _graph())


def _mean(vectors, D):
    return torch.stack(vectors).mean(0) if vectors else torch.zeros(D)


def test_mbgcn_scores_are_the_paper_s_equations_written_out():
    """α_ut = w_t n_ut / Σ_m w_m n_um; p'_u = W Σ_t α_ut mean q_i; q'_i = W mean p_u;
    y_ti = [q_i, mean_{j ∈ N^I_t(i)} q_j W^I_t]; s_ut = mean y_ti;
    ŷ = p*·q* + λ/K Σ_t s_ut M_t y_ti, with loops over users, behaviors and neighbours,
    behavior weights moved off 1."""
    model = _mbgcn().eval()
    with torch.no_grad():
        model.behavior_weight.copy_(torch.tensor([0.3, 2.0]))
        p, q = model.user_embedding.weight, model.item_embedding.weight   # q row i = item id i
        W, WI, M, lam, D = model.W.weight.T, model.item_propagate, model.item_behavior, 0.7, 4
        items_of = {(u, b): sorted({i for uu, i, bb in EDGES if uu == u and bb == b})
                    for u in range(U) for b in (1, 2)}
        users_of = {i: sorted({u for u, ii, _ in EDGES if ii == i}) for i in range(1, N + 1)}
        co = {(b, i): sorted({j for u in range(U) if i in items_of[u, b]
                              for j in items_of[u, b]} - {i})
              for b in (1, 2) for i in range(1, N + 1)}
        y = {(b, i): torch.cat([q[i], _mean([q[j] for j in co[b, i]], D) @ WI[b - 1]])
             for b in (1, 2) for i in range(1, N + 1)}
        expected = torch.zeros(U, N)
        for u in range(U):
            n = torch.tensor([len(items_of[u, b]) for b in (1, 2)], dtype=torch.float)
            alpha = model.behavior_weight * n / (model.behavior_weight * n).sum()
            p_star = torch.cat([p[u], sum(alpha[b - 1] * _mean([q[i] for i in items_of[u, b]], D)
                                          for b in (1, 2)) @ W])
            s = {b: _mean([y[b, i] for i in items_of[u, b]], 2 * D) for b in (1, 2)}
            for i in range(1, N + 1):
                q_star = torch.cat([q[i], _mean([p[v] for v in users_of[i]], D) @ W])
                expected[u, i - 1] = p_star @ q_star + lam / K * sum(
                    s[b] @ M[b - 1] @ y[b, i] for b in (1, 2))
        scores = model.score_all({"user": torch.arange(U), "target_behavior": torch.ones(U).long()})
    torch.testing.assert_close(scores, expected)


def test_mbgcn_learns_behavior_importance_and_ignores_the_target_behavior():
    """w_t gets a gradient (α enters the user's query); the score is one per user whatever the
    target behavior and the history columns (the graph holds the history)."""
    model = _mbgcn()
    batch = {"user": torch.tensor([0, 1, 3]), "target": torch.tensor([2, 4, 5]),
             "target_behavior": torch.tensor([1, 1, 2])}
    model.loss(batch).backward()
    assert model.behavior_weight.grad.abs().min() > 0
    model.eval()
    a = model.score_all({"user": torch.tensor([0, 2]), "target_behavior": torch.tensor([1, 1]),
                         "items": torch.tensor([[1, 2, 7]]).repeat(2, 1)})
    b = model.score_all({"user": torch.tensor([0, 2]), "target_behavior": torch.tensor([2, 2]),
                         "items": torch.tensor([[5, 3, 7]]).repeat(2, 1)})
    torch.testing.assert_close(a, b)


# ---------------------------------------------------------------- MB-GMN
def _mbgmn(edges=EDGES):
    torch.manual_seed(0)
    return MBGMN(MBGMNConfig(n_items=N, n_behaviors=K, d_model=8, n_heads=2, mbgmn_layers=2,
                             mbgmn_rank=2, mbgmn_negatives=3), _graph(edges))


def test_mbgmn_behavior_b_reads_only_behavior_b_edges():
    """A new behavior-2 edge changes behavior 2's representations and the all-behavior ones,
    and leaves behavior 1's exactly as they were (meta knowledge and message passing of
    behavior b see only A_b)."""
    with torch.no_grad():
        users, items = _mbgmn().eval().represent()                      # (K+1, U, d), (K+1, N, d)
        users2, items2 = _mbgmn(EDGES + [(3, 1, 2)]).eval().represent()
    torch.testing.assert_close(users2[0], users[0])
    torch.testing.assert_close(items2[0], items[0])
    for k in (1, 2):
        assert not torch.allclose(users2[k], users[k]) and not torch.allclose(items2[k], items[k])


def test_mbgmn_meta_prediction_is_the_per_pair_mlp_with_generated_weights():
    """ŷ(u, i, t) = w_2 · ψ([u⊙i, u, i] W_1 + b_1), (W_1, b_1, w_2) generated from
    μ = ψ(F_4 [u_all ⊙ u_t, u_all, u_t]): written per pair without the factorised product.
    Changing t changes the scores (the weights are per target behavior)."""
    model = _mbgmn().eval()
    with torch.no_grad():
        users, items = model.represent()
        user, behavior = torch.tensor([0, 2, 3, 0]), torch.tensor([1, 2, 2, 2])
        scores = model.score_all({"user": user, "target_behavior": behavior})     # (4, N)
        d = users.shape[-1]
        for row in range(4):
            src, tgt = users[K, user[row]], users[behavior[row] - 1, user[row]]
            mu = leaky(model.meta_out(torch.cat([src * tgt, src, tgt])))
            W1, b1, w2 = model.gen_w1(mu).view(3 * d, d), model.gen_b1(mu), model.gen_w2(mu)
            for i in range(N):
                x = torch.cat([src * items[K, i], src, items[K, i]])
                torch.testing.assert_close(scores[row, i], w2 @ leaky(x @ W1 + b1))
    assert not torch.allclose(scores[0], scores[3])                   # same user, other t


def test_mbgmn_loss_is_the_hinge_against_its_sampled_negatives():
    model = _mbgmn().eval()
    batch = {"user": torch.tensor([0, 1, 3]), "target": torch.tensor([2, 4, 5]),
             "target_behavior": torch.tensor([1, 2, 1])}
    torch.manual_seed(5)
    loss = model.loss(batch)
    torch.manual_seed(5)
    negatives = torch.randint(1, N + 1, (3, 3))
    scores = model.score_all(batch)                                   # (3, N)
    positive = scores.gather(1, batch["target"][:, None] - 1)
    hinge = (1 - (positive - scores.gather(1, negatives - 1))).relu()
    torch.testing.assert_close(loss, hinge.mean())


# ---------------------------------------------------------------- registry: inputs
def test_registry_inputs_build_the_model_with_the_training_graph_unhashed(tmp_path):
    run = dict(dataset="synthetic-tiny", profile="smoke", device="cpu", run_dir=tmp_path / "run",
               data_dir=str(tmp_path / "data"), baseline_epochs=1, min_epochs=1)
    ctx = open_run(**run)
    model, _ = train_baseline(ctx, "MBGCN")
    expected = SparseProduct(training_graph(ctx.data).item_item())
    assert torch.equal(model.item_items.col, expected.col)
    assert not any("item_items" in key for key in model.state_dict())   # not checkpointed
    first = sorted((tmp_path / "run").glob("mbgcn-*.pt"))
    assert len(first) == 1
    train_baseline(open_run(**run), "MBGCN")                          # reloaded: same digest
    assert sorted((tmp_path / "run").glob("mbgcn-*.pt")) == first


# ---------------------------------------------------------------- learning on synthetic data
def _learner(name, data):
    """(model, epochs, lr) of each graph model on synthetic-tiny."""
    graph = training_graph(data)
    if name == "MBGCN":
        return MBGCN(MBGCNConfig(n_items=data.n_items, n_behaviors=data.n_behaviors, d_model=32,
                                 mbgcn_lambda=1.0, mbgcn_message_dropout=0.2,
                                 mbgcn_node_dropout=0.2), graph), 3, 1e-2
    return MBGMN(MBGMNConfig(n_items=data.n_items, n_behaviors=data.n_behaviors, d_model=32,
                             n_heads=2, mbgmn_layers=2, mbgmn_rank=4, mbgmn_negatives=4),
                 graph), 2, 3e-3


@pytest.mark.parametrize("name", ["MBGCN", "MB-GMN"])
def test_graph_model_learns_and_beats_popularity(tiny, name):
    data, valid, pop_ndcg = tiny
    torch.manual_seed(0)
    model, epochs, lr = _learner(name, data)
    best = best_validation(model, data, valid, InteractionView(data), epochs=epochs, lr=lr,
                           batch_size=256)
    assert best > 1.5 * pop_ndcg, f"{name}: {best:.4f} vs Pop {pop_ndcg:.4f}"


def test_recommend_tells_the_graph_models_which_user_it_is(tmp_path):
    """Context.recommend passes the user's index, so a model that knows users by id (here
    MBGCN, whose score reads only the user) lists different items for different users."""
    from fatsmb_lib.training.peers import train_baseline
    from fatsmb_lib.training.run import open_run

    ctx = open_run("synthetic-tiny", "smoke", "cpu", tmp_path / "run", tmp_path / "data", 0,
                   baseline_epochs=1, min_epochs=1)
    model, _ = train_baseline(ctx, "MBGCN")
    first, second = (ctx.recommend(model, key, 1, k=10) for key in ctx.data.user_keys[:2])
    assert len(first) == 10 and first != second
