"""The project's tie rule, in one place, so that prose cannot rank what the numbers tie.

A claim "A beats B" is judged on results over several seeds, each given as ``(mean, std)``
(the pairs :func:`fatsmb_lib.training.evaluate.mean_std` and ``comparison.json`` hold):

- it **holds** when A's mean exceeds B's by more than one seed standard deviation (the larger
  of the two stds);
- it **does not hold** when B's mean exceeds A's by more than that;
- otherwise A and B **tie**.

Every comparative word a notebook prints (ahead, behind, closes, holds) comes from
:func:`verdict` or :func:`relation`; a single seed has no spread, so it is never ranked
(:func:`summarize` refuses fewer than ``MIN_SEEDS`` values).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

HOLDS, TIES, DOES_NOT_HOLD = "holds", "ties", "does not hold"
MIN_SEEDS = 3

MeanStd = tuple[float, float]


def summarize(values: Sequence[float], min_seeds: int = MIN_SEEDS) -> MeanStd:
    """``(mean, std)`` of per-seed values (std with ddof=1, as ``evaluate.mean_std``); fewer
    than ``min_seeds`` values is an error, since one seed is never ranked."""
    if len(values) < min_seeds:
        raise ValueError(f"{len(values)} value(s) {list(values)}: a comparison needs at least "
                         f"{min_seeds} seeds; one run is reported, never ranked")
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1))


def verdict(a: MeanStd, b: MeanStd, higher_is_better: bool = True) -> str:
    """Whether "A beats B" holds, ties or does not hold under the one-std rule (module doc)."""
    (mean_a, std_a), (mean_b, std_b) = a, b
    gap = (mean_a - mean_b) if higher_is_better else (mean_b - mean_a)
    spread = max(std_a, std_b)
    if gap > spread:
        return HOLDS
    if -gap > spread:
        return DOES_NOT_HOLD
    return TIES


def relation(a: MeanStd, b: MeanStd, ahead: str = "ahead of", tied: str = "tied with",
             behind: str = "behind", higher_is_better: bool = True) -> str:
    """The word that places A against B: ``ahead`` / ``tied`` / ``behind`` by :func:`verdict`."""
    return {HOLDS: ahead, TIES: tied, DOES_NOT_HOLD: behind}[verdict(a, b, higher_is_better)]


def percent_change(a: MeanStd, b: MeanStd) -> float:
    """A's mean relative to B's, in percent (the paper's "Improve" row)."""
    return 100.0 * (a[0] / b[0] - 1.0)


def format_mean_std(value: MeanStd, digits: int = 4) -> str:
    """``"0.0600 ± 0.0038"``."""
    return f"{value[0]:.{digits}f} ± {value[1]:.{digits}f}"
