"""Files that must never be half-written: atomic writes, checkpoints and what identifies them.

- :func:`atomic_write` — write to a temp file in the target folder, fsync, ``os.replace``: a
  crash (or a full disk) mid-write leaves the previous file intact and no temp file behind.
  Checkpoints and the data cache (``preprocess.save_cache``) both go through it.
- :func:`save_checkpoint` / :func:`load_checkpoint` — ``torch.save`` payloads, loaded with
  ``weights_only=True`` (tensors and plain containers only, never arbitrary code), refused with
  :class:`CheckpointMismatchError` when they were made from other data or another config.
- :func:`settings_digest` and :func:`state_fingerprint` — short hashes of the settings that
  change a model's weights and of the weights themselves; stage functions put the first in
  the checkpoint's file name, so a changed setting trains a new checkpoint instead of
  colliding with the old one, and record the second so a retrained stage 1 invalidates the
  later stages built on it.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

import torch
from torch import nn

CHECKPOINT_FORMAT = 2


class CheckpointMismatchError(ValueError):
    """A checkpoint exists but was made from other data or another config."""


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(file)`` on a temp file beside ``path``, fsync it, then ``os.replace`` it
    over ``path``. Any exception (including ``OSError`` from a full disk) removes the temp file
    and leaves an existing ``path`` untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """``torch.save(payload)`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: torch.save(payload, f))


def canonical(value):
    """Tuples -> lists and keys -> str, recursively: a config compares equal after a JSON or
    checkpoint round trip."""
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value


def _flatten(d: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def settings_digest(config: Mapping) -> str:
    """8 hex digits identifying a config (order of keys does not matter)."""
    text = json.dumps(canonical(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def tensor_fingerprint(tensors: Mapping[str, torch.Tensor]) -> str:
    """A short hash of named tensors (their names, shapes and values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def state_fingerprint(module: nn.Module) -> str:
    """A short hash of a module's weights: later stages record which earlier model they used."""
    return tensor_fingerprint(module.state_dict())


def load_checkpoint(path: str | Path, *, fingerprint: str, config: Mapping) -> dict:
    """Load a checkpoint written by ``fit`` and check it belongs to this run.

    Raises ``CheckpointMismatchError`` naming the file, each field that differs (saved ->
    wanted) and the one-line way out, when the data ``fingerprint`` or any ``config`` value
    differs from what the checkpoint was trained with.
    """
    path = Path(path)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    fix = (f"to train it again, delete the file (rm '{path}') or pass another run_dir")
    if payload.get("fingerprint") != fingerprint:
        raise CheckpointMismatchError(
            f"checkpoint {path} was trained on other data (dataset fingerprint "
            f"{payload.get('fingerprint')} -> {fingerprint}): {fix}"
        )
    saved, wanted = _flatten(canonical(payload.get("config", {}))), _flatten(canonical(config))
    differing = sorted(k for k in saved.keys() | wanted.keys() if saved.get(k) != wanted.get(k))
    if differing:
        changes = ", ".join(f"{k}: {saved.get(k)!r} -> {wanted.get(k)!r}" for k in differing)
        raise CheckpointMismatchError(
            f"checkpoint {path} was trained with other settings ({changes}): {fix}"
        )
    return payload
