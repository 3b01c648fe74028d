"""Tests of fatsmb_lib.models.kernels: every speed kernel equals its plain PyTorch form, values
and gradients (the textbook RoPE of tests/rope_oracle.py, dropout as a multiply-add with the
same mask, F.cross_entropy on full logits, boolean selection)."""
import math

import pytest
import torch
import torch.nn.functional as F
from rope_oracle import apply_rope, rope_cos_sin

import fatsmb_lib.models.kernels as kernels
from fatsmb_lib.models.kernels import (
    FastDropout,
    bucket,
    linear_cross_entropy,
    rope_tables,
    rotate_pairs,
    target_rows,
)

CPU = torch.device("cpu")


# ---------------------------------------------------------------- rotary position embedding
def test_textbook_rope_is_complex_multiplication():
    """The oracle is Eq. 11: half-split pairs (x_i, x_{i+d/2}) rotated as x·e^{imθ_i}."""
    torch.manual_seed(0)
    d, L = 8, 6
    x = torch.randn(1, 1, L, d)
    pos = torch.arange(L) * 3 + 1
    cos, sin = rope_cos_sin(pos, d, base=100.0)
    theta = 100.0 ** (-2 * torch.arange(d // 2) / d)
    z = torch.complex(x[..., : d // 2], x[..., d // 2 :]) * torch.exp(1j * pos[:, None] * theta)
    torch.testing.assert_close(apply_rope(x, cos, sin), torch.cat([z.real, z.imag], dim=-1))


def test_rotate_pairs_equals_the_textbook_rotation_values_and_gradients():
    """rope_tables + rotate_pairs, all heads side by side == rope_cos_sin + apply_rope per head."""
    torch.manual_seed(0)
    B, L, H, d = 3, 7, 3, 8
    x = torch.randn(B, L, H * d, requires_grad=True)
    upstream = torch.randn(B, L, H * d)
    cos, signed_sin = rope_tables(L, H, d, 100.0, CPU, torch.float32)
    fast = rotate_pairs(x, cos, signed_sin, H)
    c, s = rope_cos_sin(torch.arange(L), d, base=100.0)
    heads = lambda t: t.view(B, L, H, d).transpose(1, 2)  # noqa: E731  (B, H, L, d)
    plain = apply_rope(heads(x), c, s)
    torch.testing.assert_close(heads(fast), plain)
    grad_fast, = torch.autograd.grad(fast, x, upstream)
    grad_plain, = torch.autograd.grad(plain, x, heads(upstream))
    torch.testing.assert_close(grad_fast, grad_plain)


def test_rope_tables_are_cached_and_usable_after_inference_mode():
    cos, _ = rope_tables(7, 2, 8, 100.0, CPU, torch.float32)
    assert rope_tables(7, 2, 8, 100.0, CPU, torch.float32)[0] is cos  # cached
    with torch.inference_mode():  # a table first built for inference still works with autograd
        rope_tables(5, 2, 8, 10000.0, CPU, torch.float32)
    x = torch.randn(3, 5, 16, requires_grad=True)
    rotate_pairs(x, *rope_tables(5, 2, 8, 10000.0, CPU, torch.float32), 2).sum().backward()
    assert x.grad is not None


# ---------------------------------------------------------------- dropout
def test_fast_dropout_equals_a_multiply_add_with_its_mask_values_and_gradients():
    """add(x, y) == x + y·mask/keep and forward(x) == x·mask/keep, with the mask drawn from
    the same random state; gradients as those of the plain form."""
    drop = FastDropout(0.3)
    x, y = torch.randn(40, 50, requires_grad=True), torch.randn(40, 50, requires_grad=True)
    torch.manual_seed(1)
    fused = drop.add(x, y)
    torch.manual_seed(1)
    plain = x + y * drop.mask(y) / (drop.keep / 2**16)
    torch.testing.assert_close(fused, plain)
    upstream = torch.randn(40, 50)
    for a, b in zip(torch.autograd.grad(fused, (x, y), upstream),
                    torch.autograd.grad(plain, (x, y), upstream)):
        torch.testing.assert_close(a, b)
    torch.manual_seed(2)
    single = drop(y)
    torch.manual_seed(2)
    torch.testing.assert_close(single, y * drop.mask(y) / (drop.keep / 2**16))


def test_fast_dropout_keep_rate_scaling_and_eval_identity():
    torch.manual_seed(0)
    drop = FastDropout(0.1)
    x, y = torch.randn(400, 500), torch.randn(400, 500)
    out = drop(x)
    kept = out != 0
    keep = drop.keep / 2**16
    assert abs(keep - 0.9) < 2**-16
    assert abs(kept.float().mean().item() - keep) < 4 * math.sqrt(keep * (1 - keep) / x.numel())
    torch.testing.assert_close(out[kept], x[kept] / keep)  # inverted dropout: E[out] = x
    fused = drop.add(x, y)  # x + dropout(y)
    dropped = fused == x
    assert abs(dropped.float().mean().item() - (1 - keep)) < 0.01
    torch.testing.assert_close(fused[~dropped], (x + y / keep)[~dropped])
    assert not torch.equal(drop(x), drop(x))  # fresh masks every call
    drop.eval()
    assert drop(x) is x and torch.equal(drop.add(x, y), x + y)
    assert FastDropout(0.0).train()(x) is x
    with pytest.raises(AssertionError, match="p=1"):
        FastDropout(1.0)


# ---------------------------------------------------------------- cross-entropy over all items
@pytest.mark.parametrize("bias", [True, False])
def test_linear_cross_entropy_equals_autograd(bias, monkeypatch):
    """Values and gradients of the chunked fused loss == F.cross_entropy on full logits, with
    ignored rows (target −1), several chunks, in float64."""
    monkeypatch.setattr(kernels, "_CE_CHUNK_ELEMENTS", 40)  # 40 // 11 = 3 rows a chunk
    torch.manual_seed(0)
    z = torch.randn(10, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(11, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(11, dtype=torch.float64, requires_grad=True) if bias else None
    target = torch.randint(0, 11, (10,))
    target[[2, 7]] = -1
    params = [z, w] + ([b] if bias else [])
    loss = linear_cross_entropy(z, w, b, target)
    grads = torch.autograd.grad(3.0 * loss, params)
    logits = z @ w.T + (b if bias else 0.0)
    ref = F.cross_entropy(logits, target, ignore_index=-1, reduction="sum")
    torch.testing.assert_close(loss, ref)
    for g, r in zip(grads, torch.autograd.grad(3.0 * ref, params)):
        torch.testing.assert_close(g, r)
    assert torch.autograd.gradcheck(lambda *p: linear_cross_entropy(p[0], p[1], p[2] if bias else None, target), params)


def test_target_rows_pad_to_a_bucket_and_select_what_a_mask_selects():
    assert [bucket(m) for m in (0, 1, 31, 32, 33, 100, 2049, 2100)] == [0, 1, 31, 32, 33, 100, 2112, 2112]
    assert all(0 <= bucket(m) - m < max(1, m / 32) for m in range(1, 5000))
    g = torch.Generator().manual_seed(0)
    has_target = torch.zeros(100, dtype=torch.bool)
    has_target[torch.randperm(100, generator=g)[:67]] = True  # M = 67 -> bucket(67) = 68
    has_target = has_target.view(10, 10)
    targets = torch.randint(1, 20, (10, 10), generator=g) * has_target
    h = torch.randn(10, 10, 4, generator=g)
    M = 67
    index, target = target_rows(targets)
    assert index.shape == target.shape == (68,)  # one row of padding
    torch.testing.assert_close(h.flatten(0, 1)[index[:M]], h[has_target])
    assert torch.equal(target[:M], targets[has_target] - 1)
    assert (target[M:] == -1).all() and (index[M:] == 0).all()
    assert target_rows(torch.zeros(3, 4, dtype=torch.long))[0].numel() == 0
