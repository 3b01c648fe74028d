"""Randomness and devices: the small helpers every other module shares.

Randomness in this project has exactly two sources, both functions of the run's seed:

- **training** draws (dropout masks, the diffusion step t, the noise ε, the guidance drop,
  stage 3's z_T) come from torch's global generator, which :func:`fatsmb_lib.training.train.fit`
  re-seeds at the start of every epoch with :func:`epoch_seed` ``(seed, epoch)``. Each epoch
  therefore draws afresh, and a resumed run draws exactly what the uninterrupted run drew.
  Shuffling and Cloze masks use their own generator of the same (seed, epoch)
  (:func:`epoch_generator`), so changing how many random numbers a model draws never changes
  which rows it sees.
- **evaluation** of sampling models draws from a generator passed through the model contract
  (``score_all(batch, generator)``); validating between epochs never touches the global state.
"""
from __future__ import annotations

import random
import resource
import sys
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

# two independent streams per (seed, epoch): the global one (model draws) and the batch one
_GLOBAL_STREAM, _BATCH_STREAM = 0, 1


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds all CUDA devices


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded with ``seed``, for functions that sample."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def epoch_seed(seed: int, epoch: int, stream: int = _GLOBAL_STREAM) -> int:
    """A seed that is a function of (run seed, epoch, stream) only, distinct for each triple."""
    return (seed * 1_000_003 + epoch) * 2 + stream


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of one epoch's shuffling and masking (stream distinct from the global one)."""
    return make_generator(epoch_seed(seed, epoch, _BATCH_STREAM))


DEVICE_HINT = "use device='cpu' or 'auto' (or 'cuda' / 'cuda:N' on a machine with a GPU)"


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, else CPU; ``"cpu"``; ``"cuda"`` / ``"cuda:N"``; ``"mps"``.

    Anything else, a misspelling included, and a GPU that is not there raise ``RuntimeError``
    with the same advice (:data:`DEVICE_HINT`).
    """
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise RuntimeError(f"device={name!r} was requested but torch knows no such device: "
                           f"{DEVICE_HINT}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device={name!r} was requested but torch.cuda.is_available() is False: "
                f"{DEVICE_HINT}, or install a CUDA build of torch"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"device={name!r} was requested but only {torch.cuda.device_count()} CUDA "
                "device(s) are visible: use 'cuda' or an index below that count"
            )
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise RuntimeError(f"device={name!r} was requested but torch.backends.mps."
                               f"is_available() is False: {DEVICE_HINT}")
    elif device.type != "cpu":
        raise RuntimeError(f"device={name!r} was requested but this project runs only on cpu, "
                           f"cuda or mps: {DEVICE_HINT}")
    return device


def model_device(model: nn.Module, default: torch.device | str | None = None) -> torch.device:
    """The device of ``model``'s first parameter (or buffer); ``default`` or CPU if it has none."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return resolve_device(default) if default is not None else torch.device("cpu")


def to_device(batch: Mapping[str, object], device: torch.device) -> dict:
    """Copy a batch dict to ``device``; non-tensor values pass through unchanged."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of scalar parameters (only those with ``requires_grad`` if ``trainable_only``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def peak_rss_mib(children: bool = False) -> float:
    """Peak resident memory (MiB) of this process, or with ``children`` of the largest child
    process that has finished (e.g. the notebook kernels papermill ran)."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    peak = resource.getrusage(who).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, else KiB
