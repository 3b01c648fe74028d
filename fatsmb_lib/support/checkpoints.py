"""Files that must never be half-written: atomic writes, checkpoints and what identifies them.

- :func:`atomic_write` — write to a temp file in the target folder, fsync, ``os.replace``: a
  crash (or a full disk) mid-write leaves the previous file intact and no temp file behind.
  Checkpoints and the data cache (``preprocess.save_cache``) both go through it.
- :func:`save_checkpoint` / :func:`load_checkpoint` — ``torch.save`` payloads, loaded with
  ``weights_only=True`` (tensors and plain containers only, never arbitrary code: we never
  load with ``weights_only=False``), refused with :class:`CheckpointMismatchError` when they
  were made from other data or another config. A file that cannot be read (zero bytes,
  truncated, garbage, not one of ours, non-finite numbers) raises
  :class:`CorruptCheckpointError`; :func:`move_aside` puts it beside as
  ``<name>.corrupt-<time>`` so training can start afresh without destroying the evidence.
- :func:`non_finite` — the names of the tensors holding NaN or ±inf in a (nested) state.
- :func:`settings_digest` and :func:`state_fingerprint` — short hashes of the settings that
  change a model's weights and of the weights themselves; stage functions put the first in
  the checkpoint's file name, so a changed setting trains a new checkpoint instead of
  colliding with the old one, and record the second so a retrained stage 1 invalidates the
  later stages built on it.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

import torch
from torch import nn

CHECKPOINT_FORMAT = 2


class CheckpointMismatchError(ValueError):
    """A checkpoint exists but was made from other data or another config."""


def write_text(path: str | Path, text: str) -> None:
    """Every report's writer: ``text`` (UTF-8) to ``path`` through :func:`atomic_write`, so an
    interrupted run leaves the previous report whole, never half of a new one."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


class CorruptCheckpointError(ValueError):
    """A checkpoint file exists but cannot be used: empty, truncated, garbage, not a
    checkpoint of this project, or holding non-finite numbers."""


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


def _torch_save(payload: dict, f: BinaryIO) -> None:
    """``torch.save``, except that a failed write surfaces as the ``OSError`` it is: torch's
    zip writer turns it (e.g. a full disk) into a RuntimeError from its own cleanup, raised
    while handling the OSError."""
    try:
        torch.save(payload, f)
    except RuntimeError as exc:
        if isinstance(exc.__context__, OSError):
            raise exc.__context__ from None
        raise


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """``torch.save(payload)`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: _torch_save(payload, f))


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


def non_finite(state, prefix: str = "") -> list[str]:
    """Names (dotted paths) of the floating-point tensors and floats in ``state`` (a tensor,
    or nested dicts / lists of them, e.g. a state_dict or an optimizer's) that hold NaN or ±inf."""
    name = prefix.rstrip(".") or "value"
    if isinstance(state, torch.Tensor):
        return [name] if state.is_floating_point() and not bool(torch.isfinite(state).all()) else []
    if isinstance(state, float):
        return [] if math.isfinite(state) else [name]
    if isinstance(state, Mapping):
        children = state.items()
    elif isinstance(state, (list, tuple)):
        children = enumerate(state)
    else:
        return []
    return [bad for key, value in children for bad in non_finite(value, f"{prefix}{key}.")]


def move_aside(path: str | Path) -> Path:
    """Rename ``path`` to ``<name>.corrupt-<YYYYmmdd-HHMMSS>`` beside it (never overwriting an
    earlier one) and return the new path."""
    path = Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside, n = path.with_name(f"{path.name}.corrupt-{stamp}"), 1
    while aside.exists():
        aside, n = path.with_name(f"{path.name}.corrupt-{stamp}-{n}"), n + 1
    os.replace(path, aside)
    return aside


def read_checkpoint(path: str | Path, required: tuple[str, ...] = ("fingerprint", "config")) -> dict:
    """``torch.load(path, weights_only=True)``, or :class:`CorruptCheckpointError` naming the
    file and what is wrong with it (instead of torch's traceback, whose advice to pass
    ``weights_only=False`` would run whatever code the file holds)."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise CorruptCheckpointError(f"checkpoint {path} is unreadable (zero bytes)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise  # permissions, I/O: not the file's content
    except Exception as exc:  # truncated zip, garbage, foreign pickles: all unusable
        text = str(exc).strip()
        reason = text.split(". ")[0].splitlines()[0] if text else type(exc).__name__
        if "weights_only" in text:   # torch's advice would run the file's code: not ours
            reason = ("not a file of tensors and plain containers: garbage, or objects that only "
                      "executing its code could load")
        raise CorruptCheckpointError(f"checkpoint {path} is unreadable ({reason})") from None
    if not isinstance(payload, dict) or not set(required) <= set(payload):
        raise CorruptCheckpointError(
            f"checkpoint {path} is not a checkpoint of this project (no "
            f"{', '.join(k for k in required if not isinstance(payload, dict) or k not in payload)})")
    bad = non_finite({k: v for k, v in payload.items() if k != "history"})
    if bad:
        raise CorruptCheckpointError(f"checkpoint {path} holds non-finite numbers "
                                     f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''})")
    return payload


def load_checkpoint(path: str | Path, *, fingerprint: str, config: Mapping,
                    required: tuple[str, ...] = ("fingerprint", "config")) -> dict:
    """Load a checkpoint written by ``fit`` and check it belongs to this run.

    Raises :class:`CorruptCheckpointError` when the file cannot be used (see
    :func:`read_checkpoint`; ``required`` lists the keys it must hold), and
    ``CheckpointMismatchError`` naming the file, each field that differs (saved -> wanted)
    and the one-line way out, when the data ``fingerprint`` or any ``config`` value differs
    from what the checkpoint was trained with.
    """
    path = Path(path)
    payload = read_checkpoint(path, required)
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
