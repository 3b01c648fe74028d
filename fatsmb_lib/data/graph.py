"""The user-item graph of the training parts, one edge type per behavior, for the graph
baselines (MBGCN, MB-GMN; ``models/mbgcn.py``, ``models/mbgmn.py``).

The graph is built ONLY from each user's training part (``SequenceData.split()``): a user's
validation and test items never become edges, so nothing of what evaluation asks about is
propagated. An edge is a distinct (user, item, behavior) triple: a user who gave the same item
the same behavior twice has one edge (the authors of both models build 0/1 matrices).

Every matrix is a sparse ``torch`` COO tensor whose rows stack the behaviors, so one sparse
product propagates all behaviors at once (no loop over behaviors)::

    user_item(norm)      (K·U, N)     row b·U + u, column i: A_b[u, i], normalised
    item_user(norm)      (K·N, U)     row b·N + i, column u: A_bᵀ[i, u], normalised
    block(norm)          (K·U, K·N)   block-diagonal diag(A_1, ..., A_K): behavior b's users
                                      meet behavior b's items only (per-behavior embeddings)
    items_users()        (N, U)       row i: the users of item i under any behavior, mean
    item_item()          (K·N, N)     row b·N + i, column j: items i ≠ j that one user gave
                                      behavior b to both, mean-normalised (MBGCN's item graph)

Norms: "mean" divides a row by its degree (the mean of the neighbours), "sym" by
sqrt(deg_row · deg_col) with both degrees taken within the behavior (GCN's D^-½ A D^-½), "none"
keeps ones. Rows without neighbours are all zero.

:class:`SparseProduct` holds one of them for the models: ``A x`` for dense x with gradients
for x (and for A's values), each direction through a CSR matrix (torch's COO product and its
backward are several times slower on the CPU).

Ids: users 0..U−1 (``SequenceData``'s user index, the ``user`` key of a batch), items as
columns 0..N−1 for item ids 1..N, behaviors as blocks 0..K−1 for behavior ids 1..K.
Shapes: U users, N items, K behaviors, E edges.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .preprocess import SequenceData

NORMS = ("mean", "sym", "none")


@dataclass(frozen=True)
class BehaviorGraph:
    """Distinct (user, item, behavior) edges and the sizes of the id spaces (module docstring).

    ``user`` (E,) in 0..U−1, ``item`` (E,) in 1..N (item ids), ``behavior`` (E,) in 1..K.
    """

    n_users: int
    n_items: int
    n_behaviors: int
    user: torch.Tensor
    item: torch.Tensor
    behavior: torch.Tensor

    @classmethod
    def from_interactions(cls, user, item, behavior, n_users: int, n_items: int,
                          n_behaviors: int) -> "BehaviorGraph":
        """The graph of interactions given as three equally long integer arrays (repeats are
        merged into one edge)."""
        user, item, behavior = (np.asarray(a, dtype=np.int64) for a in (user, item, behavior))
        if len(user) and not (0 <= user.min() and user.max() < n_users
                              and 1 <= item.min() and item.max() <= n_items
                              and 1 <= behavior.min() and behavior.max() <= n_behaviors):
            raise ValueError("edges out of range: users 0..U-1, items 1..N, behaviors 1..K")
        key = np.unique(((behavior - 1) * n_users + user) * n_items + (item - 1))  # sorted
        b_u, i = np.divmod(key, n_items)
        b, u = np.divmod(b_u, n_users)
        as_long = lambda a: torch.from_numpy(np.ascontiguousarray(a)).long()  # noqa: E731
        return cls(n_users, n_items, n_behaviors, as_long(u), as_long(i + 1), as_long(b + 1))

    def degrees(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(U, K) items per user and (N, K) users per item, within each behavior."""
        K = self.n_behaviors
        b = self.behavior - 1
        user_deg = torch.zeros(self.n_users * K).index_add_(
            0, self.user * K + b, torch.ones(len(b))).view(self.n_users, K)
        item_deg = torch.zeros(self.n_items * K).index_add_(
            0, (self.item - 1) * K + b, torch.ones(len(b))).view(self.n_items, K)
        return user_deg, item_deg

    def _values(self, norm: str, rows_are_users: bool) -> torch.Tensor:
        """(E,) edge weights under ``norm`` (rows: users or items)."""
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        user_deg, item_deg = self.degrees()
        b = self.behavior - 1
        du, di = user_deg[self.user, b], item_deg[self.item - 1, b]  # (E,), (E,) both >= 1
        if norm == "none":
            return torch.ones(len(b))
        if norm == "sym":
            return (du * di).rsqrt()
        return 1.0 / (du if rows_are_users else di)

    def user_item(self, norm: str = "mean") -> torch.Tensor:
        """(K·U, N): row b·U + u holds user u's behavior-b items."""
        rows = (self.behavior - 1) * self.n_users + self.user
        return _sparse(rows, self.item - 1, self._values(norm, True),
                       (self.n_behaviors * self.n_users, self.n_items))

    def item_user(self, norm: str = "mean") -> torch.Tensor:
        """(K·N, U): row b·N + i holds item i's behavior-b users."""
        rows = (self.behavior - 1) * self.n_items + self.item - 1
        return _sparse(rows, self.user, self._values(norm, False),
                       (self.n_behaviors * self.n_items, self.n_users))

    def items_users(self) -> torch.Tensor:
        """(N, U): row i averages the users who gave item i any behavior (behaviors merged)."""
        key = torch.unique((self.item - 1) * self.n_users + self.user)   # distinct (item, user)
        rows, cols = key // self.n_users, key % self.n_users
        deg = torch.zeros(self.n_items).index_add_(0, rows, torch.ones(len(rows)))
        return _sparse(rows, cols, 1.0 / deg[rows], (self.n_items, self.n_users))

    def block(self, norm: str = "sym") -> torch.Tensor:
        """(K·U, K·N) block-diagonal diag(A_1, ..., A_K), rows users (its transpose:
        ``block(norm).t()`` for the items' side when ``norm`` is symmetric)."""
        b = self.behavior - 1
        return _sparse(b * self.n_users + self.user, b * self.n_items + self.item - 1,
                       self._values(norm, True),
                       (self.n_behaviors * self.n_users, self.n_behaviors * self.n_items))

    def item_item(self) -> torch.Tensor:
        """(K·N, N): row b·N + i averages the items j ≠ i that share a behavior-b user with i
        (MBGCN's item-item graph of behavior b). Built from every pair of edges within one
        (behavior, user) group: Σ_(b,u) n_bu² pairs, n_bu the user's items under b."""
        group = ((self.behavior - 1) * self.n_users + self.user).numpy()  # edges sorted by it
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])     # first edge of a group
        size = np.diff(np.r_[starts, len(group)])                          # n_bu per group
        per_edge = np.repeat(size, size)                                   # (E,) its group's size
        first = np.repeat(starts, size)                                    # (E,) its group's start
        src = np.repeat(np.arange(len(group)), per_edge)                   # (Σ n²,) edge e ...
        offset = np.arange(len(src)) - np.repeat(np.cumsum(per_edge) - per_edge, per_edge)
        dst = first[src] + offset                                          # ... with each partner
        item, behavior = self.item.numpy() - 1, self.behavior.numpy() - 1
        keep = item[src] != item[dst]                                      # no self loops
        key = np.unique((behavior[src[keep]] * self.n_items + item[src[keep]]) * self.n_items
                        + item[dst[keep]])                                 # distinct (b, i, j)
        row, col = (torch.from_numpy(a) for a in np.divmod(key, self.n_items))
        deg = torch.zeros(self.n_behaviors * self.n_items).index_add_(
            0, row, torch.ones(len(row)))
        return _sparse(row, col, 1.0 / deg[row], (self.n_behaviors * self.n_items, self.n_items))


def _sparse(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor,
            shape: tuple[int, int]) -> torch.Tensor:
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), values.float(), shape,
                                   check_invariants=False).coalesce()


def training_graph(data: SequenceData) -> BehaviorGraph:
    """The graph of every user's training part (never the validation or test item)."""
    split = data.split()
    return BehaviorGraph.from_interactions(split.train_users, split.train_items,
                                           split.train_behaviors, data.n_users, data.n_items,
                                           data.n_behaviors)


class _CSRProduct(torch.autograd.Function):
    """y = A x with A given by CSR (crow, col, values) and its transpose's CSR (crow_t, col_t,
    values[perm]): the backward pass is Aᵀ g (and g_r x_c for the values)."""

    @staticmethod
    def forward(ctx, values, x, crow, col, crow_t, col_t, perm, shape):
        A = torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)
        ctx.save_for_backward(values, x, crow, col, crow_t, col_t, perm)
        ctx.shape = shape
        return A @ x

    @staticmethod
    def backward(ctx, grad):
        values, x, crow, col, crow_t, col_t, perm = ctx.saved_tensors
        grad_values = grad_x = None
        if ctx.needs_input_grad[1]:
            At = torch.sparse_csr_tensor(crow_t, col_t, values[perm], ctx.shape[::-1],
                                         check_invariants=False)
            grad_x = At @ grad
        if ctx.needs_input_grad[0]:
            rows = torch.repeat_interleave(torch.arange(len(crow) - 1, device=crow.device),
                                           crow.diff())
            grad_values = (grad[rows] * x[col]).sum(-1)
        return grad_values, grad_x, None, None, None, None, None, None


class SparseProduct(nn.Module):
    """A fixed sparse matrix A (R, C) of the graph, applied as ``self(x)`` = A x for x (C, F),
    optionally with other ``values`` in place of A's (e.g. after dropout). A buffer, not a
    parameter, and not in the state dict (it is rebuilt from the data)."""

    def __init__(self, matrix: torch.Tensor):
        super().__init__()
        matrix = matrix.coalesce()
        self.shape = tuple(matrix.shape)
        with warnings.catch_warnings():  # torch's one-time note that CSR support is in beta
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            csr = matrix.to_sparse_csr()
        # where each stored value of A sits in Aᵀ's CSR order
        order = torch.sparse_coo_tensor(matrix.indices(), torch.arange(matrix._nnz()),
                                        self.shape, check_invariants=False)
        csr_t = order.t().coalesce().to_sparse_csr()
        for name, value in (("crow", csr.crow_indices()), ("col", csr.col_indices()),
                            ("values", csr.values()), ("crow_t", csr_t.crow_indices()),
                            ("col_t", csr_t.col_indices()), ("perm", csr_t.values())):
            self.register_buffer(name, value, persistent=False)

    def forward(self, x: torch.Tensor, values: torch.Tensor | None = None) -> torch.Tensor:
        return _CSRProduct.apply(self.values if values is None else values, x, self.crow,
                                 self.col, self.crow_t, self.col_t, self.perm, self.shape)
