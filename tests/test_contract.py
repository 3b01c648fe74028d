"""Tests of fatsmb_lib.models.contract: every model keeps the Recommender contract on a batch of
its kind, and the shared pieces (tied item table, masked cross-entropy, initialisation) are
what their docstrings say."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fatsmb_lib.data.batches import cloze_mask
from fatsmb_lib.data.graph import BehaviorGraph
from fatsmb_lib.models.baselines import BehaviorSASRec, BERT4Rec, Pop, SASRec
from fatsmb_lib.models.contract import Recommender, init_weights, item_weight, masked_cross_entropy
from fatsmb_lib.models.denoiser import DenoiserConfig, build_denoiser
from fatsmb_lib.models.diffurec import DiffuRec, DiffuRecConfig
from fatsmb_lib.models.diffusion import DiffusionConfig, LatentDiffusion
from fatsmb_lib.models.encoder import MBAE, EncoderConfig
from fatsmb_lib.models.fatsmb import FatsMB, LatentSpace
from fatsmb_lib.models.gru4rec import GRU4Rec, GRU4RecConfig
from fatsmb_lib.models.mbgcn import MBGCN, MBGCNConfig
from fatsmb_lib.models.mbgmn import MBGMN, MBGMNConfig
from fatsmb_lib.models.mbstr import MBSTR, MBSTRConfig
from fatsmb_lib.models.mgpt import MGPT, MGPTConfig
from fatsmb_lib.models.missl import MISSL, MISSLConfig
from fatsmb_lib.models.pbat import PBAT, PBATConfig

N, NB, B, L, D = 12, 3, 4, 8, 16


# ---------------------------------------------------------------- batches of every kind
def _sequences(seed=0):
    """(B, L) items and behaviors, rows left-padded by 0, 1, 3 and 6."""
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, N + 1, (B, L), generator=g)
    behaviors = torch.randint(1, NB + 1, (B, L), generator=g)
    pad = torch.arange(L)[None, :] < torch.tensor([0, 1, 3, 6])[:, None]
    return items.masked_fill(pad, 0), behaviors.masked_fill(pad, 0)


def cloze_batch():
    items, behaviors = _sequences(1)
    return cloze_mask(items, behaviors, 0.4, 0.0, N + 1, NB + 1, torch.Generator().manual_seed(1), 0.0)


def next_item_batch():
    items, behaviors = _sequences(2)
    real = items > 0
    return {"items": items, "behaviors": behaviors,
            "targets": torch.cat([items[:, 1:], torch.full((B, 1), 5)], dim=1) * real,
            "target_behaviors": torch.cat([behaviors[:, 1:], torch.full((B, 1), 2)], dim=1) * real}


def prefix_batch():
    items, behaviors = _sequences(3)
    target_behavior = torch.tensor([1, 2, 3, 1])
    return {"items": torch.cat([items[:, 1:], torch.full((B, 1), N + 1)], dim=1),
            "behaviors": torch.cat([behaviors[:, 1:], target_behavior[:, None]], dim=1),
            "target": torch.tensor([3, 7, 12, 1]), "target_behavior": target_behavior,
            "user": torch.tensor([2, 0, 3, 1])}


def interaction_batch():
    """One training interaction per row: its user, item and behavior."""
    return {"user": torch.tensor([0, 3, 1, 0]), "target": torch.tensor([5, 2, 12, 9]),
            "target_behavior": torch.tensor([2, 1, 3, 3])}


def graph():
    """The user-item graph of the B rows of ``_sequences`` read as B users' interactions."""
    items, behaviors = _sequences(6)
    users = torch.arange(B)[:, None].expand(B, L)
    real = items > 0
    return BehaviorGraph.from_interactions(users[real], items[real], behaviors[real], B, N, NB)


def latent_batch():
    g = torch.Generator().manual_seed(4)
    return {"z_b": torch.randn(B, D, generator=g), "z_null": torch.randn(B, D, generator=g),
            "target": torch.tensor([3, 7, 12, 1]), "target_behavior": torch.tensor([1, 2, 3, 1])}


# ---------------------------------------------------------------- every model
ENCODER = EncoderConfig(n_items=N, n_behaviors=NB, d_model=D, n_heads=2, n_layers=1, dropout=0.1,
                        max_len=L, position="barope", rope_base=10000.0)


def fatsmb():
    denoiser = build_denoiser(DenoiserConfig(denoiser="mcgln", d_model=D, n_denoiser_layers=1,
                                             n_behaviors=NB, n_shared=1, n_private=1,
                                             denoiser_hidden_mult=2, denoiser_dropout=0.0))
    diffusion = LatentDiffusion(DiffusionConfig(T=20, schedule="exp", stride=5, eta=0.0,
                                                prediction="x0", p_uncond=0.2, omega=1.0,
                                                n_samples=1, sample_average="scores"))
    return FatsMB(MBAE(ENCODER), denoiser, diffusion, LatentSpace(D, "z_b", "none"))


MODELS = {  # name: (build, the batch its loss takes, None for a model fitted by counting)
    "MBAE": (lambda: MBAE(ENCODER), cloze_batch),
    "BERT4Rec": (lambda: BERT4Rec(ENCODER), cloze_batch),
    "SASRec": (lambda: SASRec(ENCODER), next_item_batch),
    "BehaviorSASRec": (lambda: BehaviorSASRec(ENCODER), next_item_batch),
    "Pop": (lambda: Pop.fit(*_sequences(5), N, NB, per_behavior=True), None),
    "GRU4Rec": (lambda: GRU4Rec(GRU4RecConfig(n_items=N, d_model=D, dropout=0.1)), next_item_batch),
    "MBSTR": (lambda: MBSTR(MBSTRConfig(n_items=N, n_behaviors=NB, d_model=D, n_heads=2, n_layers=1,
                                        dropout=0.1, mbstr_buckets=8, mbstr_max_distance=L,
                                        mbstr_shared=2, mbstr_private=1)), cloze_batch),
    "DiffuRec": (lambda: DiffuRec(ENCODER, DiffuRecConfig(diffurec_T=32, diffurec_schedule="linear",
                                                          diffurec_stride=8, eta=0.5,
                                                          diffurec_lambda=0.1)), prefix_batch),
    "MISSL": (lambda: MISSL(MISSLConfig(n_items=N, n_behaviors=NB, d_model=D, n_heads=2, n_layers=1,
                                        dropout=0.1, max_len=L, missl_interests=4,
                                        missl_interest_layers=2, missl_epsilon=0.6, missl_tau=1.0,
                                        missl_lambda_behavior=1.0, missl_lambda_ib=0.05,
                                        missl_lambda_inter=0.05, missl_lambda_intra=0.05)),
              next_item_batch),
    "FatsMB": (fatsmb, latent_batch),
    "MBGCN": (lambda: MBGCN(MBGCNConfig(n_items=N, n_behaviors=NB, d_model=D, mbgcn_lambda=1.0,
                                        mbgcn_message_dropout=0.2, mbgcn_node_dropout=0.2),
                            graph()), interaction_batch),
    "MB-GMN": (lambda: MBGMN(MBGMNConfig(n_items=N, n_behaviors=NB, d_model=D, n_heads=2,
                                         mbgmn_layers=2, mbgmn_rank=4, mbgmn_negatives=2),
                             graph()), interaction_batch),
    "MGPT": (lambda: MGPT(MGPTConfig(n_items=N, n_behaviors=NB, d_model=D, n_heads=2, n_layers=1,
                                     dropout=0.1, max_len=L, mgpt_orders=3, mgpt_sessions=2,
                                     mgpt_queries=3, mgpt_fine_sessions=4, mgpt_fine_queries=2,
                                     mgpt_lp=4.0, mgpt_l1=1e-3, mgpt_hide_target=False)),
             cloze_batch),
    "PBAT": (lambda: PBAT(PBATConfig(n_items=N, n_behaviors=NB, n_users=B, d_model=D, n_heads=2,
                                     n_layers=1, dropout=0.1, max_len=L)),
             lambda: {**cloze_batch(), "user": torch.arange(B)}),  # personalised: rows' users
}


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_keeps_the_contract(name):
    """isinstance(model, Recommender); loss on a batch of the model's kind is a finite scalar
    whose gradient reaches its parameters; score_all scores all N items of every row of a
    prefix batch, drawing only from the generator it is given."""
    build, batch_of_its_kind = MODELS[name]
    torch.manual_seed(0)
    model = build()
    assert isinstance(model, Recommender)

    if batch_of_its_kind is None:
        with pytest.raises(NotImplementedError):
            model.loss(prefix_batch())
    else:
        model.train()
        loss = model.loss(batch_of_its_kind())
        assert loss.shape == () and torch.isfinite(loss) and loss.requires_grad
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)

    model.eval()
    batch = prefix_batch()
    state = torch.get_rng_state()
    with torch.no_grad():
        scores = model.score_all(batch, torch.Generator().manual_seed(0))
        again = model.score_all(batch, torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state), "score_all drew from the global generator"
    assert scores.shape == (B, N) and torch.isfinite(scores).all()
    assert torch.equal(scores, again)


def test_a_model_without_score_all_is_not_a_recommender():
    class LossOnly(nn.Module):
        def loss(self, batch):
            return torch.zeros(())

    assert not isinstance(LossOnly(), Recommender)


# ---------------------------------------------------------------- the shared pieces
def test_item_weight_is_the_items_rows_of_the_embedding_and_carries_gradient():
    embedding = nn.Embedding(N + 2, D, padding_idx=0)  # 0 padding, 1..N items, N+1 [mask]
    table = item_weight(embedding)
    assert table.shape == (N, D)
    assert torch.equal(table, embedding.weight[torch.arange(1, N + 1)])
    table.sum().backward()
    assert (embedding.weight.grad[1 : N + 1] == 1).all()
    assert (embedding.weight.grad[[0, N + 1]] == 0).all()  # padding and [mask] are no items


@pytest.mark.parametrize("with_query", [False, True])
def test_masked_cross_entropy_is_the_mean_over_real_targets(with_query):
    """Equal to F.cross_entropy over the selected rows (values and gradients), with a bias, a
    per-row query transform with its condition, and padded (ignored) rows: M = 67 -> 68 rows."""
    g = torch.Generator().manual_seed(0)
    has_target = torch.zeros(10 * 10, dtype=torch.bool)
    has_target[torch.randperm(100, generator=g)[:67]] = True
    has_target = has_target.view(10, 10)
    targets = torch.randint(1, N + 1, (10, 10), generator=g) * has_target
    condition = torch.randint(1, NB + 1, (10, 10), generator=g) * has_target
    h = torch.randn(10, 10, D, generator=g, dtype=torch.float64, requires_grad=True)
    items = torch.randn(N, D, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(N, generator=g, dtype=torch.float64, requires_grad=True)
    embed = nn.Embedding(NB + 1, D).double()
    query = (lambda z, c: torch.tanh(z) + embed(c)) if with_query else None  # noqa: E731
    loss = masked_cross_entropy(h, targets, items, query=query,
                                condition=condition if with_query else None, bias=bias)
    z = h[has_target]  # (M, D)
    if with_query:
        z = query(z, condition[has_target])
    ref = F.cross_entropy(z @ items.T + bias, targets[has_target] - 1)
    torch.testing.assert_close(loss, ref)
    params = [h, items, bias] + (list(embed.parameters()) if with_query else [])
    for a, b in zip(torch.autograd.grad(loss, params), torch.autograd.grad(ref, params)):
        torch.testing.assert_close(a, b)


def test_masked_cross_entropy_with_one_target_per_row_and_with_none():
    g = torch.Generator().manual_seed(1)
    z, items = torch.randn(5, D, generator=g), torch.randn(N, D, generator=g)
    target = torch.tensor([1, 5, 12, 3, 3])
    torch.testing.assert_close(masked_cross_entropy(z, target, items), F.cross_entropy(z @ items.T, target - 1))
    h = torch.randn(2, 3, D, requires_grad=True)
    loss = masked_cross_entropy(h, torch.zeros(2, 3, dtype=torch.long), items)
    loss.backward()
    assert loss.item() == 0.0 and h.grad is not None


def test_init_weights_is_bert_style():
    torch.manual_seed(0)
    linear, embedding = nn.Linear(200, 300), nn.Embedding(500, 40, padding_idx=0)
    for module in (linear, embedding):
        init_weights(module)
    assert (linear.bias == 0).all() and (embedding.weight[0] == 0).all()
    for weight in (linear.weight, embedding.weight[1:]):
        assert weight.abs().max() <= 0.04 and abs(weight.std().item() - 0.0176) < 0.001  # N(0, 0.02) cut at ±2σ
