"""The textbook rotary position embedding (Eqs. 11, 24), the oracle the library's fast RoPE
(``fatsmb_lib.models.kernels.rope_tables`` + ``rotate_pairs``) is tested against.

Half-split pairs: coordinate i of a head is paired with coordinate i + d/2, the complex number
x_i + i·x_{i+d/2}, rotated by m·θ_i with θ_i = base^(−2i/d).
"""
import torch


def rope_cos_sin(positions: torch.Tensor, d_head: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of m·θ_i for ``positions`` (L,) or (B, L): each (..., d_head), entry i and
    entry i + d_head/2 holding the same angle (one pair)."""
    i = torch.arange(d_head // 2, dtype=torch.float64)
    theta = base ** (-2.0 * i / d_head)  # (d_head/2,)
    angles = positions.to(torch.float64)[..., None] * theta  # (..., d_head/2)
    angles = torch.cat([angles, angles], dim=-1)  # (..., d_head)
    return angles.cos().float(), angles.sin().float()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1): multiplication by i of the complex number x1 + i·x2."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """f(x, m) = x·e^{imθ} of x (B, H, L, d_head) with ``cos``/``sin`` (L, d_head) or
    (B, L, d_head) from :func:`rope_cos_sin`."""
    if cos.dim() == 3:  # (B, L, d_head) -> (B, 1, L, d_head), broadcast over heads
        cos, sin = cos[:, None], sin[:, None]
    return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)
