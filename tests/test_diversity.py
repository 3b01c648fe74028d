"""Diversity of recommended lists: each metric against a hand-computed case, and the study
end to end on tiny data (every model measured, ω changes only sampling)."""
import json

import numpy as np
import pytest
import torch

from fatsmb_lib.models.baselines import Pop
from fatsmb_lib.studies.diversity import (
    bootstrap_interval,
    coverage,
    intra_list_diversity,
    jaccard,
    popularity_percentile,
    run_diversity,
    top_lists,
)


def test_intra_list_diversity_is_one_minus_the_mean_pairwise_cosine():
    vectors = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])   # items 1..4
    lists = torch.tensor([[1, 2, 3], [1, 4, 3]])
    # list 1: cos(1,2)=0, cos(1,3)=cos(2,3)=1/√2; list 2: cos(1,4)=1, cos(1,3)=cos(4,3)=1/√2
    expected = [1 - (0 + 2 / 2 ** 0.5) / 3, 1 - (1 + 2 / 2 ** 0.5) / 3]
    np.testing.assert_allclose(intra_list_diversity(lists, vectors), expected, rtol=1e-6)


def test_coverage_popularity_and_jaccard_by_hand():
    lists = torch.tensor([[1, 2], [2, 3]])
    assert coverage(lists, 10) == pytest.approx(0.3)
    counts = np.array([5, 1, 9, 3])                   # items 1..4: percentiles 0.75, 0.25, 1, 0.5
    np.testing.assert_allclose(popularity_percentile(lists, counts), [0.5, 0.625])
    a, b = torch.tensor([[1, 2, 3], [4, 5, 6]]), torch.tensor([[3, 2, 9], [7, 8, 9]])
    np.testing.assert_allclose(jaccard(a, b), [2 / 4, 0.0])


def test_the_bootstrap_interval_brackets_the_mean_and_narrows_with_more_users():
    rng = np.random.default_rng(0)
    few, many = rng.normal(0.5, 0.1, 50), rng.normal(0.5, 0.1, 5000)
    for values in (few, many):
        mean, low, high = bootstrap_interval(values)
        assert low < mean < high and mean == pytest.approx(values.mean())
    assert np.subtract(*bootstrap_interval(many)[2:0:-1]) < np.subtract(
        *bootstrap_interval(few)[2:0:-1]) / 5


def test_top_lists_under_a_fixed_behavior_put_it_at_the_mask_column():
    items = torch.tensor([[1, 2, 1], [2, 2, 3]])
    behaviors = torch.tensor([[1, 1, 1], [2, 2, 2]])
    pop = Pop.fit(items, behaviors, 4, 2, per_behavior=True)
    batch = {"items": torch.tensor([[1, 2, 5]]), "behaviors": torch.tensor([[1, 1, 1]]),
             "target": torch.tensor([1]), "target_behavior": torch.tensor([1])}
    own = top_lists(pop, [batch], k=2)
    as_two = top_lists(pop, [batch], k=2, behavior=2)
    assert own.tolist() == [[1, 2]] and as_two.tolist() == [[2, 3]]


def test_the_study_measures_every_model_and_omega_acts_only_at_sampling(tmp_path):
    short = dict(stage1_epochs=1, baseline_epochs=1, stage2_epochs=1, stage3_epochs=1,
                 min_epochs=1, max_users=100)
    report = run_diversity("synthetic-tiny", "smoke", "cpu", tmp_path / "run", tmp_path / "out",
                           omegas=(0.0, 5.0), peers=("SASRec",), log=lambda line: None, **short)
    assert list(report["models"]) == ["MBAE", "SASRec", "FatsMB ω=0", "FatsMB ω=5"]
    fatsmb = report["models"]["FatsMB ω=5"]
    assert "overlap across samples" in fatsmb and "overlap across samples" not in report[
        "models"]["SASRec"]
    for metric in ("intra-list diversity", "popularity percentile", "overlap across behaviors"):
        mean, low, high = fatsmb[metric]
        assert 0 <= low <= mean <= high <= 1
    saved = json.loads((tmp_path / "out" / "diversity.json").read_text())
    assert saved["models"]["SASRec"]["coverage"] == report["models"]["SASRec"]["coverage"]
    assert len(list((tmp_path / "run").glob("decoder-*.pt"))) == 1     # one stage 3 for every ω
