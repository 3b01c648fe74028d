"""Entropies of items and behaviors over a whole dataset (Table 1, Appendix B).

Appendix B takes the empirical frequencies of items ``I``, behaviors ``B`` and item-behavior
pairs over all interactions as probabilities p(i), p(b), p(i, b). In nats (natural log):

    H(I)   = - sum_i p(i) log p(i)
    H(B)   = - sum_b p(b) log p(b)
    H(B|I) = - sum_{i,b} p(i, b) log p(b | i),   p(b | i) = p(i, b) / p(i)
    H(I|B) = - sum_{i,b} p(i, b) log p(i | b),   p(i | b) = p(i, b) / p(b)
    I(I;B) =   sum_{i,b} p(i, b) log [p(i, b) / (p(i) p(b))]

Each is computed from its own definition, so the identities H(I|B) = H(I,B) - H(B) and
I = H(I) - H(I|B) = H(B) - H(B|I) are checks, not assumptions. Table 1's point: H(B|I) is
small (a user's behavior on a given item is predictable) while H(I|B) is large (the items
of a given behavior are not) -- the "asymmetric deterministic" of Section 1.
"""
from __future__ import annotations

import numpy as np


def entropy_table(items: np.ndarray, behaviors: np.ndarray) -> dict[str, float]:
    """``{"H(I)", "H(B)", "H(B|I)", "H(I|B)", "I(I;B)"}`` in nats from paired arrays (n,)."""
    assert len(items) == len(behaviors) > 0, "need equally long, non-empty items and behaviors"
    item_idx = np.unique(items, return_inverse=True)[1].ravel()
    behavior_idx = np.unique(behaviors, return_inverse=True)[1].ravel()
    n_b = int(behavior_idx.max()) + 1
    n = len(item_idx)
    p_i = np.bincount(item_idx) / n                                  # (n_items,)
    p_b = np.bincount(behavior_idx) / n                              # (n_b,)
    pair = np.bincount(item_idx * n_b + behavior_idx)                # joint counts, flat
    nz = np.flatnonzero(pair)
    p_ib = pair[nz] / n                                              # nonzero p(i, b)
    pi, pb = p_i[nz // n_b], p_b[nz % n_b]                           # their marginals
    return {
        "H(I)": float(-(p_i * np.log(p_i)).sum()),
        "H(B)": float(-(p_b * np.log(p_b)).sum()),
        "H(B|I)": float(-(p_ib * np.log(p_ib / pi)).sum()),
        "H(I|B)": float(-(p_ib * np.log(p_ib / pb)).sum()),
        "I(I;B)": float((p_ib * np.log(p_ib / (pi * pb))).sum()),
    }
