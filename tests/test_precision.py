"""Tests of fatsmb_lib.support.precision: the fp32/bf16 knob around torch.autocast."""
import pytest
import torch

from fatsmb_lib.support.precision import PRECISIONS, autocast, autocast_dtype


def test_fp32_changes_nothing_and_bf16_autocasts_matmuls():
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with autocast("cpu", "fp32"):
        assert autocast_dtype("cpu") is None
        assert (a @ b).dtype == torch.float32
    with autocast(torch.device("cpu"), "bf16"):
        assert autocast_dtype("cpu") == torch.bfloat16
        assert (a @ b).dtype == torch.bfloat16
        assert (a + 1).dtype == torch.float32  # element-wise ops keep their inputs' dtype
    assert autocast_dtype("cpu") is None


def test_unknown_precision_says_what_to_use():
    with pytest.raises(ValueError, match=str(PRECISIONS[0])):
        autocast("cpu", "fp16")
