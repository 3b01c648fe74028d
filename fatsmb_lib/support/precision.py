"""Mixed precision in one knob: ``precision="bf16"`` runs the matmuls in bfloat16 under
``torch.autocast``, ``"fp32"`` (the default) changes nothing.

A training step reads::

    with autocast(device, precision):
        loss = model.loss(batch)          # matmuls in bf16, softmax / LayerNorm / losses in fp32
    loss.backward()                       # weights, gradients and AdamW stay fp32

Parameters, optimizer state and the residual stream stay fp32; only the inputs of matrix
products are rounded to bf16 (8 bits of mantissa) and the products are accumulated in fp32.
bf16 pays where matmuls dominate and the hardware multiplies bf16 natively: CUDA GPUs from
Ampere on, and CPUs with AVX512-BF16 or AMX (on an AVX512-BF16 CPU, one thread: stage-1 MBAE
step 2.2x, SASRec 2.9x, guided scoring 2.0x the old fp32 speed; fp32 alone 1.3x, 1.6x, 1.35x).
Without native bf16 the CPU converts in software: measure before choosing it there.

Only training uses it (``Profile.precision`` → ``TrainConfig.precision``; the Cloze models'
own ``Profile.stage1_precision`` overrides it, since bf16 pays there and not in stage 2).
Evaluation always runs in fp32: bf16 scores keep 8 bits of mantissa, so many items would tie
with the target, and ties count against the model (``evaluate.rank_of_target``).
"""
from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("fp32", "bf16")


def autocast(device: torch.device | str, precision: str = "fp32") -> contextlib.AbstractContextManager:
    """Context for a forward pass: ``"bf16"`` -> ``torch.autocast(device type, bfloat16)``,
    ``"fp32"`` -> a context that does nothing. ``device`` is e.g. ``"cpu"``, ``"cuda:0"``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast gives matrix products on ``device_type`` ("cpu", "cuda") right now,
    or None outside an autocast region. For code that casts explicitly (custom autograd
    functions, which autocast does not see into the way it sees into plain ops)."""
    if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4
        enabled = torch.is_autocast_enabled(device_type)
        return torch.get_autocast_dtype(device_type) if enabled else None
    if device_type == "cpu":
        return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
    return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None
