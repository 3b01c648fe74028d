"""The tie rule every comparative word in the notebooks comes from."""
import pytest

from fatsmb_lib.studies.verdicts import (
    DOES_NOT_HOLD,
    HOLDS,
    TIES,
    percent_change,
    relation,
    summarize,
    verdict,
)


def test_a_gap_beyond_the_larger_std_holds_or_fails():
    assert verdict((0.070, 0.002), (0.060, 0.004)) == HOLDS
    assert verdict((0.060, 0.004), (0.070, 0.002)) == DOES_NOT_HOLD


def test_a_gap_inside_either_std_ties():
    # the gap 0.003 is larger than A's std but inside B's: the larger std decides
    assert verdict((0.063, 0.001), (0.060, 0.004)) == TIES
    assert verdict((0.060, 0.004), (0.063, 0.001)) == TIES


def test_lower_is_better_flips_the_direction():
    assert verdict((1.0, 0.1), (2.0, 0.1), higher_is_better=False) == HOLDS
    assert relation((1.0, 0.1), (2.0, 0.1), higher_is_better=False) == "ahead of"


def test_relation_words():
    assert relation((0.07, 0.001), (0.06, 0.001)) == "ahead of"
    assert relation((0.06, 0.001), (0.07, 0.001)) == "behind"
    assert relation((0.06, 0.01), (0.065, 0.01), tied="level with") == "level with"


def test_one_seed_is_never_ranked():
    with pytest.raises(ValueError, match="at least 3 seeds"):
        summarize([0.06])
    mean, std = summarize([0.0644, 0.0536, 0.0575])
    assert mean == pytest.approx(0.0585, abs=1e-4) and std == pytest.approx(0.0055, abs=1e-4)


def test_percent_change():
    assert percent_change((0.06, 0.0), (0.0667, 0.0)) == pytest.approx(-10.04, abs=0.01)
