"""Speed kernels of the models: each computes what a few lines of plain PyTorch compute, with
less memory traffic on the CPU. ``tests/test_kernels.py`` checks every one against its plain
form, values and gradients, so the model modules can call them as if they were that form.

- :func:`rope_tables` + :func:`rotate_pairs` — the rotary position embedding of Eq. 11,
  f(x, m) = x·e^{imθ}, for all heads of q and k at once with cached tables and no
  concatenation. Plain form: ``x·cos + rotate_half(x)·sin`` per head.
- :class:`FastDropout` — inverted dropout with 16 random bits per element and the residual add
  fused in. Plain form: ``x + y·mask/keep``.
- :func:`linear_cross_entropy` — Σ_i CE(z_i Wᵀ + b, t_i) without the (M, N) logits, gradient
  formed chunk by chunk in the forward pass. Plain form: ``F.cross_entropy(z @ W.T + b, t,
  ignore_index=-1, reduction="sum")``.
- :func:`target_rows` — the positions that hold a target, padded to one of a few bucketed
  sizes (:func:`bucket`) so the allocator can reuse memory. Plain form: ``targets > 0``.

Rotation pairs are *half-split* (the GPT-NeoX / Llama layout): coordinate i of a head is paired
with coordinate i + d_head/2, i.e. the complex number x_i + i·x_{i+d_head/2} is rotated by m·θ_i.

Shapes: B batch, L sequence length, H heads, D model width, N items, M selected rows.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from ..support.precision import autocast_dtype


# ---------------------------------------------------------------------------------------------
# Rotary position embedding (Eq. 11)
# ---------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def rope_tables(
    L: int, n_heads: int, d_head: int, base: float, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines and signed sines of the angles m·θ_i, θ_i = base^(−2i/d_head) (Eq. 11), of
    positions m = 0..L−1 for ``n_heads`` heads side by side, as :func:`rotate_pairs` wants them.

    Returns ``cos`` (L, H·d_head), in each head's block entry i and entry i + d_head/2 holding
    cos(m·θ_i) (one pair), and ``signed_sin`` (L, H·d_head), each head's block being
    (−sin, +sin) over its two halves. Computed once per argument tuple and cached (read-only).
    """
    assert d_head % 2 == 0, f"d_head={d_head} must be even: rotary embeddings rotate pairs; pick d_model = 2·k·n_heads"
    with torch.inference_mode(False):  # usable by autograd even if first built for inference
        i = torch.arange(d_head // 2, device=device, dtype=torch.float32)
        theta = base ** (-2.0 * i / d_head)  # (d_head/2,)
        angles = torch.arange(L, device=device, dtype=torch.float32)[:, None] * theta  # (L, d_head/2)
        cos, sin = angles.cos(), angles.sin()
        cos, signed_sin = torch.cat([cos, cos], dim=-1), torch.cat([-sin, sin], dim=-1)  # (L, d_head)
        return cos.repeat(1, n_heads).to(dtype), signed_sin.repeat(1, n_heads).to(dtype)


def rotate_pairs(
    x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor, n_heads: int
) -> torch.Tensor:
    """f(x, m) = x·e^{imθ} (Eq. 11) with heads side by side: x (B, L, n_heads·d_head), ``cos``
    and ``signed_sin`` (L, n_heads·d_head) from :func:`rope_tables`. Per head and pair i:

        (x_i, x_{i+d/2}) -> (x_i cos − x_{i+d/2} sin, x_{i+d/2} cos + x_i sin)

    i.e. x·cos + swap(x)·signed_sin, where swap exchanges the two halves of every head: one
    ``roll`` copy, where the plain form takes a negation and a concatenation (``flip`` would
    do too, but is 10x slower than ``roll`` on CPU, measured).
    """
    d_head = x.shape[-1] // n_heads
    swapped = torch.roll(x.unflatten(-1, (n_heads, d_head)), d_head // 2, dims=-1).flatten(-2)
    return torch.addcmul(x * cos, swapped, signed_sin)


# ---------------------------------------------------------------------------------------------
# Dropout
# ---------------------------------------------------------------------------------------------
class FastDropout(nn.Dropout):
    """Inverted dropout like ``nn.Dropout``, with cheaper masks and ``add(x, y) = x + dropout(y)``
    (a residual connection) in one kernel.

    A mask takes 16 random bits per element (one 64-bit draw serves four elements) where
    ``nn.Dropout`` draws a Bernoulli variable per element: an element is kept with probability
    k/2^16, k = round((1 − p)·2^16), and scaled by 2^16/k, so E[dropout(y)] = y exactly.
    NOTE: the keep rate is 1 − p up to 2^-17 (p = 0.1 keeps 0.899994 of the elements).
    """

    def __init__(self, p: float = 0.5):
        assert 0.0 <= p < 1.0, f"dropout p={p} must be in [0, 1): p = 1 would drop everything"
        super().__init__(p)
        self.keep = min(round((1.0 - p) * 2**16), 2**16 - 1)  # k: kept when 16 bits < k

    def mask(self, like: torch.Tensor) -> torch.Tensor:
        """A 0/1 mask shaped and typed like ``like``; 1 with probability k/2^16."""
        words = torch.empty((like.numel() + 3) // 4, dtype=torch.int64, device=like.device)
        bits = words.random_(-(2**63), None).view(torch.int16)[: like.numel()]  # uniform on [-2^15, 2^15)
        out = torch.empty(like.shape, dtype=like.dtype, device=like.device)
        return torch.lt(bits.view(like.shape), self.keep - 2**15, out=out)

    def active(self) -> bool:
        return self.training and self.p > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.active():
            return x
        return x * self.mask(x) * (2**16 / self.keep)

    def add(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x + dropout(y), fused: one ``addcmul`` instead of a multiply, a scale and an add."""
        if not self.active():
            return x + y
        return torch.addcmul(x, y, self.mask(y), value=2**16 / self.keep)


# ---------------------------------------------------------------------------------------------
# Cross-entropy over all items
# ---------------------------------------------------------------------------------------------
# Rows of logits per chunk in ``linear_cross_entropy``: 2^19 fp32 values (2 MiB) stay in cache.
_CE_CHUNK_ELEMENTS = 2**19


class _LinearCrossEntropy(torch.autograd.Function):
    """Σ_i CE(z_i Wᵀ + b, t_i) with its gradient computed in the forward pass, chunk by chunk."""

    @staticmethod
    def forward(ctx, z, weight, bias, target):
        device, (M, D), N = z.device.type, z.shape, weight.shape[0]
        acc = torch.promote_types(z.dtype, torch.float32)  # softmax and sums: fp32 at least
        dtype = autocast_dtype(device) or z.dtype  # matmul inputs: bf16 under autocast
        need_z, need_w, need_b = ctx.needs_input_grad[:3]
        with torch.autocast(device, enabled=False):  # casts are explicit below
            zc, wc = z.to(dtype), weight.to(dtype)
            bc = None if bias is None else bias.to(dtype)
            loss = torch.zeros((), dtype=acc, device=z.device)
            grad_z = torch.empty(M, D, dtype=acc, device=z.device) if need_z else None
            grad_w = torch.zeros(N, D, dtype=acc, device=z.device) if need_w else None
            grad_b = torch.zeros(N, dtype=acc, device=z.device) if need_b else None
            chunk = max(1, _CE_CHUNK_ELEMENTS // N)
            for start in range(0, M, chunk):
                rows = slice(start, start + chunk)
                ignored = target[rows, None] < 0  # (C, 1)
                t = target[rows, None].clamp(min=0)
                logits = zc[rows] @ wc.T if bc is None else torch.addmm(bc, zc[rows], wc.T)
                log_p = logits.to(acc).log_softmax(dim=1)  # (C, N)
                loss -= log_p.gather(1, t).masked_fill_(ignored, 0.0).sum()
                if not (need_z or need_w or need_b):
                    continue
                g = log_p.exp_()  # softmax
                g.scatter_add_(1, t, torch.full(t.shape, -1.0, dtype=acc, device=z.device))  # − onehot
                g.masked_fill_(ignored, 0.0)
                if need_b:
                    grad_b += g.sum(0)
                g = g.to(dtype)
                if need_z:
                    grad_z[rows] = g @ wc
                if need_w:
                    grad_w += g.T @ zc[rows]
        ctx.save_for_backward(grad_z, grad_w, grad_b)
        ctx.dtypes = z.dtype, weight.dtype, None if bias is None else bias.dtype
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grads = [None if g is None else (g * grad_loss).to(dt)
                 for g, dt in zip(ctx.saved_tensors, ctx.dtypes)]
        return *grads, None


def linear_cross_entropy(
    z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, target: torch.Tensor
) -> torch.Tensor:
    """Summed softmax cross-entropy of the logits z Wᵀ + b: Σ_i −log softmax(z_i Wᵀ + b)[t_i].

    z (M, D), weight (N, D), bias (N,) or None, target (M,) in 0..N-1, or −1 for a row to
    ignore -> a scalar. Equals ``F.cross_entropy(z @ weight.T + bias, target, ignore_index=-1,
    reduction="sum")``, but the rows go through in chunks of ~2^19 logits that stay in cache,
    and the gradient is formed right there from ∂CE_i/∂logits_i = softmax_i − onehot(t_i):

        ∂/∂z_i = (softmax_i − onehot_i) W,   ∂/∂W = Σ_i (softmax_i − onehot_i)ᵀ z_i,   ∂/∂b = Σ_i (…)

    so the (M, N) logits, their log-softmax and their gradient never exist (3·M·N floats whose
    size changes with M from batch to batch); the matmul FLOPs are those of autograd. Under
    autocast the products run in its dtype (bf16), the softmax and the gradient sums in fp32.
    """
    return _LinearCrossEntropy.apply(z, weight, bias, target)


def bucket(M: int, per_octave: int = 32) -> int:
    """M rounded up to a multiple of 2^(⌊log2 M⌋ − log2 per_octave): at most ``per_octave``
    distinct values between two powers of two, less than 1/per_octave of padding (bucket(0) = 0)."""
    step = 2 ** max(0, M.bit_length() - 1 - (per_octave.bit_length() - 1))
    return -(-M // step) * step


def target_rows(targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The flat positions where ``targets`` (any shape; item ids, 0 = no target) is > 0 and
    the targets there minus one (columns 0..N−1), both (M',): padded with position 0 under
    target −1 (ignored by :func:`linear_cross_entropy`) to M' = bucket(M) rows.

    Why pad: the number M of positions with a target changes from batch to batch, and so would
    the size of every tensor of the loss. glibc's allocator cannot reuse memory freed by
    tensors of slightly different sizes, so a training process grew by ~10 MiB per step
    (ml100k, stage 1, measured); with a handful of bucketed sizes its memory stays flat.
    """
    index = (targets > 0).flatten().nonzero()[:, 0]  # (M,) flat positions
    pad = bucket(index.numel()) - index.numel()
    target = F.pad(targets.flatten()[index] - 1, (0, pad), value=-1)  # (M',)
    return F.pad(index, (0, pad)), target
