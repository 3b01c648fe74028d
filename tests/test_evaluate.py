"""Full-ranking metrics against rankings and NDCG values computed by hand."""
import math

import pytest
import torch
from torch import nn

from fatsmb_lib.training.evaluate import (
    evaluate,
    format_metrics_table,
    mean_std,
    rank_of_target,
    recall_ndcg,
    recommend_topk,
)

N = 20


def inv_log2(x: float) -> float:
    return math.log(2) / math.log(x)  # 1 / log2(x)


# ----------------------------------------------------------------------------- rank_of_target


def test_rank_counts_items_scored_higher():
    scores = torch.tensor([[3.0, 1.0, 2.0, 0.5]])
    ranks = [int(rank_of_target(scores, torch.tensor([t]))) for t in (1, 2, 3, 4)]
    assert ranks == [0, 2, 1, 3]  # item 1 first, item 3 second, item 2 third, item 4 last


def test_ties_are_pessimistic():
    # items 2 and 4 tie at 0.5: each sees the other above itself
    scores = torch.tensor([[0.1, 0.5, 0.3, 0.5]])
    ranks = rank_of_target(scores.expand(4, 4), torch.tensor([1, 2, 3, 4]))
    assert ranks.tolist() == [3, 1, 2, 1]


def test_constant_scores_rank_last_and_score_zero():
    scores = torch.zeros(3, N)
    ranks = rank_of_target(scores, torch.tensor([1, 7, N]))
    assert ranks.tolist() == [N - 1] * 3
    metrics = recall_ndcg(ranks, ks=(1, 5, 10, N - 1))
    assert all(float(v.sum()) == 0.0 for v in metrics.values())


def test_rank_is_vectorised_over_rows():
    torch.manual_seed(0)
    scores = torch.randn(16, N)
    target = torch.randint(1, N + 1, (16,))
    expected = [int((scores[i] > scores[i, target[i] - 1]).sum()) for i in range(16)]  # no ties in randn
    assert rank_of_target(scores, target).tolist() == expected


def test_nan_scores_raise():
    scores = torch.zeros(2, 5)
    scores[1, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        rank_of_target(scores, torch.tensor([1, 2]))


def test_target_out_of_range_raises():
    with pytest.raises(ValueError, match="1..N"):
        rank_of_target(torch.zeros(1, 5), torch.tensor([0]))


# ----------------------------------------------------------------------------- recall_ndcg


def test_recall_ndcg_hand_computed():
    ranks = torch.tensor([0, 1, 2, 9, 10, 60])
    m = recall_ndcg(ranks, ks=(1, 10))
    assert m["Recall@1"].tolist() == [1, 0, 0, 0, 0, 0]
    assert m["NDCG@1"].tolist() == [1, 0, 0, 0, 0, 0]
    assert m["Recall@10"].tolist() == [1, 1, 1, 1, 0, 0]
    # NDCG = 1 / log2(rank + 2): rank 0 -> 1/log2(2) = 1, rank 1 -> 1/log2(3), rank 2 -> 1/log2(4) = 0.5
    expected = [1.0, 0.6309297535714574, 0.5, 0.2890648263178879, 0.0, 0.0]  # 1/log2(3), 1/log2(11)
    assert m["NDCG@10"].tolist() == pytest.approx(expected, abs=1e-7)


def test_k_larger_than_n_is_fine():
    scores = torch.arange(5, 0, -1).float().expand(5, 5)  # item 1 best ... item 5 worst
    ranks = rank_of_target(scores, torch.arange(1, 6))
    m = recall_ndcg(ranks, ks=(50,))
    assert m["Recall@50"].tolist() == [1.0] * 5
    assert m["NDCG@50"].tolist() == pytest.approx([inv_log2(r + 2) for r in range(5)])


# ----------------------------------------------------------------------------- evaluate


class RankByIdModel(nn.Module):
    """Scores item j as -j (item 1 best, all distinct), so the target's rank is target - 1."""

    def __init__(self, with_parameter: bool):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(())) if with_parameter else None

    def score_all(self, batch, generator=None):
        B = batch["items"].shape[0]
        scores = -torch.arange(1, N + 1, dtype=torch.float).expand(B, N)  # (B, N)
        return scores * self.scale if self.scale is not None else scores


def prefix_batch(targets, behaviors, users):
    B, L = len(targets), 6
    items = torch.randint(1, N + 1, (B, L))
    items[:, -1] = N + 1  # [mask] item
    beh = torch.randint(1, 4, (B, L))
    beh[:, -1] = torch.tensor(behaviors)
    return {
        "items": items, "behaviors": beh, "target": torch.tensor(targets),
        "target_behavior": torch.tensor(behaviors), "user": torch.tensor(users),
    }


TARGETS = [1, 2, 3, 11, 20, 5]  # ranks 0, 1, 2, 10, 19, 4
BEHAVIORS = [1, 1, 2, 2, 3, 1]


def loader():
    return [prefix_batch(TARGETS[:4], BEHAVIORS[:4], [0, 1, 2, 3]),
            prefix_batch(TARGETS[4:], BEHAVIORS[4:], [4, 5])]


@pytest.mark.parametrize("with_parameter", [False, True])
def test_evaluate_exact_averages(with_parameter):
    res = evaluate(RankByIdModel(with_parameter), loader(), ks=(5, 10), behavior_names=["neg", "neutral", "pos"])
    assert res["n"] == 6
    assert res["Recall@5"] == pytest.approx(4 / 6)  # ranks 0, 1, 2, 4
    assert res["Recall@10"] == pytest.approx(4 / 6)  # rank 10 misses @10
    assert res["NDCG@10"] == pytest.approx((1 + inv_log2(3) + 0.5 + inv_log2(6)) / 6)
    pb = res["per_behavior"]
    assert set(pb) == {"neg", "neutral", "pos"}
    assert pb["neg"]["n"] == 3 and pb["neutral"]["n"] == 2 and pb["pos"]["n"] == 1
    assert pb["neg"]["NDCG@10"] == pytest.approx((1 + inv_log2(3) + inv_log2(6)) / 3)  # ranks 0, 1, 4
    assert pb["neutral"]["Recall@10"] == pytest.approx(0.5)  # ranks 2, 10
    assert pb["pos"]["Recall@10"] == 0.0  # rank 19
    for metric in ("Recall@5", "NDCG@5", "Recall@10", "NDCG@10"):
        weighted = sum(m["n"] * m[metric] for m in pb.values()) / res["n"]
        assert weighted == pytest.approx(res[metric])


def test_evaluate_default_behavior_names_and_training_mode_restored():
    model = RankByIdModel(with_parameter=True)
    model.train()
    res = evaluate(model, loader(), ks=(10,))
    assert model.training
    assert set(res["per_behavior"]) == {"1", "2", "3"}
    model.eval()
    evaluate(model, loader(), ks=(10,))
    assert not model.training


def test_evaluate_runs_in_eval_mode_without_grad():
    class Spy(RankByIdModel):
        def score_all(self, batch, generator=None):
            assert not self.training and not torch.is_grad_enabled()
            return super().score_all(batch)

    evaluate(Spy(with_parameter=True), loader(), ks=(10,))


def test_evaluate_empty_loader_raises():
    with pytest.raises(ValueError, match="no batches"):
        evaluate(RankByIdModel(False), [], ks=(10,))


# ----------------------------------------------------------------------------- helpers


def test_recommend_topk_returns_item_ids_best_first():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3], [4.0, 3.0, 2.0, 1.0]])
    assert recommend_topk(scores, 2).tolist() == [[2, 3], [1, 2]]
    with pytest.raises(ValueError, match="k must lie"):
        recommend_topk(scores, 5)


def test_mean_std_and_table():
    runs = [
        {"Recall@10": 0.1, "NDCG@10": 0.05, "n": 4, "per_behavior": {"buy": {"Recall@10": 0.2, "n": 2}}},
        {"Recall@10": 0.3, "NDCG@10": 0.05, "n": 4, "per_behavior": {"buy": {"Recall@10": 0.4, "n": 2}}},
    ]
    agg = mean_std(runs)
    assert agg["Recall@10"] == pytest.approx((0.2, math.sqrt(0.02)))  # sample std: sqrt((0.1² + 0.1²) / 1)
    assert agg["NDCG@10"] == pytest.approx((0.05, 0.0))
    assert agg["per_behavior"]["buy"]["Recall@10"] == pytest.approx((0.3, math.sqrt(0.02)))
    assert mean_std(runs[:1])["Recall@10"] == (0.1, 0.0)
    table = format_metrics_table({"Pop": {"Recall@10": 0.02861, "NDCG@10": 0.0121}, "FatsMB": agg},
                                 keys=("Recall@10", "NDCG@10", "Recall@20"))
    assert table.splitlines() == [
        "| model | Recall@10 | NDCG@10 | Recall@20 |",
        "|---|---|---|---|",
        "| Pop | 0.0286 | 0.0121 | — |",
        "| FatsMB | 0.2000 ± 0.1414 | 0.0500 ± 0.0000 | — |",
    ]


def test_mean_std_refuses_mismatched_runs():
    with pytest.raises(ValueError, match="different metric keys"):
        mean_std([{"Recall@10": 0.1}, {"NDCG@10": 0.1}])
