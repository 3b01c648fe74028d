"""The training loop, in plain sight: seeds, device, atomic checkpoints, early stopping.

``fit`` is the one loop all three FatsMB stages and every baseline use. It is written out
(numbered steps) rather than hidden in a Trainer class, because the loop is part of what
the notebooks teach. What changes between stages is passed in: which parameters train
(``params``; the rest stay frozen), how batches are made (``train_batches(epoch)``), the
loss (``loss_fn(batch)``) and validation (``validate() -> metrics``).

Runs are resumable: a checkpoint is written atomically at the end of every epoch, so an
interrupted run (Ctrl-C, a crash, a killed job) loses at most one epoch, and re-running the
same call continues exactly where it stopped: weights, optimizer, early-stopping state and
all random number generators are restored. A checkpoint from another dataset or another
config is refused rather than silently reused.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm  # plain bars: no ipywidgets needed in notebooks

__all__ = [
    "seed_everything",
    "make_generator",
    "resolve_device",
    "model_device",
    "to_device",
    "TrainConfig",
    "History",
    "CheckpointMismatchError",
    "NonFiniteLossError",
    "save_checkpoint",
    "load_checkpoint",
    "train_one_epoch",
    "fit",
    "count_parameters",
]

CHECKPOINT_FORMAT = 1


# ----------------------------------------------------------------------------- randomness, device


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds all CUDA devices


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded with ``seed``, for functions that sample."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, else CPU; ``"cpu"``; ``"cuda"`` / ``"cuda:N"`` (checked)."""
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device={name!r} was requested but torch.cuda.is_available() is False: "
                "use device='cpu' or 'auto', or install a CUDA build of torch"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"device={name!r} was requested but only {torch.cuda.device_count()} CUDA "
                "device(s) are visible: use 'cuda' or an index below that count"
            )
    return device


def model_device(model: nn.Module, default: torch.device | str | None = None) -> torch.device:
    """The device of ``model``'s first parameter (or buffer); ``default`` or CPU if it has none."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return resolve_device(default) if default is not None else torch.device("cpu")


def to_device(batch: Mapping[str, object], device: torch.device) -> dict:
    """Copy a batch dict to ``device``; non-tensor values pass through unchanged."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


# ----------------------------------------------------------------------------- config and history


@dataclass
class TrainConfig:
    """Optimisation and early-stopping settings (defaults: the paper's AdamW, lr 2e-3, batch 256).

    ``monitor`` names a key of ``validate()``'s dict; higher is better (Recall/NDCG).
    ``patience`` counts evaluations, not epochs. ``grad_clip`` <= 0 disables clipping.
    ``device`` is for the caller, who moves the model there (``resolve_device(cfg.device)``);
    ``fit`` itself always trains on the device the model is on.
    """

    lr: float = 2e-3
    weight_decay: float = 0.01
    batch_size: int = 256
    max_epochs: int = 100
    patience: int = 10
    min_epochs: int = 1
    grad_clip: float = 1.0
    monitor: str = "NDCG@10"
    seed: int = 0
    device: str = "auto"
    eval_every: int = 1


@dataclass
class History:
    """What ``fit`` did, epoch by epoch (epochs are 1-based).

    ``val_metrics[i]`` is the validation dict of ``epochs[i]`` (``{}`` on epochs without
    validation, see ``TrainConfig.eval_every``).
    """

    monitor: str = "NDCG@10"
    epochs: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_metrics: list[dict] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    best_value: float | None = None
    stopped_early: bool = False

    def metric(self, name: str) -> tuple[list[int], list[float]]:
        """(epochs, values) of one validation metric, skipping epochs without validation."""
        pairs = [(e, m[name]) for e, m in zip(self.epochs, self.val_metrics) if name in m]
        return [e for e, _ in pairs], [v for _, v in pairs]

    def record(self, epoch: int, train_loss: float, metrics: dict, seconds: float) -> None:
        """Append one epoch."""
        self.epochs.append(epoch)
        self.train_loss.append(train_loss)
        self.val_metrics.append(dict(metrics))
        self.seconds.append(seconds)

    def summary_line(self, i: int = -1) -> str:
        """One human-readable line for the i-th recorded epoch."""
        line = f"epoch {self.epochs[i]}: loss {self.train_loss[i]:.4f} ({self.seconds[i]:.1f} s)"
        if self.monitor in self.val_metrics[i]:
            line += (f", {self.monitor} {self.val_metrics[i][self.monitor]:.4f}"
                     f" (best {self.best_value:.4f} at epoch {self.best_epoch})")
        return line

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (also what the checkpoint stores)."""
        return copy.deepcopy(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping) -> History:
        return cls(**copy.deepcopy(dict(d)))


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of scalar parameters (only those with ``requires_grad`` if ``trainable_only``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


# ----------------------------------------------------------------------------- checkpoints


class CheckpointMismatchError(ValueError):
    """A checkpoint exists but was made from other data or another config."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """Write ``payload`` with ``torch.save`` atomically: a temp file in the same directory,
    flushed and fsync'ed, then ``os.replace``d over ``path``. A crash mid-write leaves the
    previous checkpoint intact and no temp file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _canonical(value):
    """Tuples -> lists, recursively, so a config compares equal after a save/load round trip."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def _flatten(d: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def load_checkpoint(path: str | Path, *, fingerprint: str, config: Mapping) -> dict:
    """Load a checkpoint written by ``fit`` and check it belongs to this run.

    Raises ``CheckpointMismatchError`` naming the file and what differs when the data
    ``fingerprint`` or any ``config`` value differs from what the checkpoint was trained with.
    Loads with ``weights_only=True``: only tensors and plain containers, no arbitrary code.
    """
    path = Path(path)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    fix = "delete it or use another run_dir"
    if payload.get("fingerprint") != fingerprint:
        raise CheckpointMismatchError(
            f"checkpoint {path} was trained on dataset fingerprint {payload.get('fingerprint')}, "
            f"this run uses {fingerprint}: {fix}"
        )
    saved, wanted = _flatten(_canonical(payload.get("config", {}))), _flatten(_canonical(config))
    differing = sorted(k for k in saved.keys() | wanted.keys() if saved.get(k) != wanted.get(k))
    if differing:
        changes = ", ".join(f"{k}: {saved.get(k)!r} -> {wanted.get(k)!r}" for k in differing)
        raise CheckpointMismatchError(
            f"checkpoint {path} was trained with a different config ({changes}): {fix}"
        )
    return payload


def _rng_states() -> dict:
    np_state = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: Mapping) -> None:
    random.setstate(states["python"])
    n = states["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(states["torch"])
    cuda = states.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _cpu_copy(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def _monitored(metrics: Mapping, monitor: str) -> float:
    if monitor not in metrics:
        raise KeyError(
            f"TrainConfig.monitor={monitor!r} is not among the validation metrics "
            f"{sorted(metrics)}: set monitor to one of them"
        )
    return float(metrics[monitor])


@dataclass
class _Run:
    """Where one ``fit`` call checkpoints, and what identifies it (no-op without a path)."""

    path: Path | None
    fingerprint: str
    config: dict

    def exists(self) -> bool:
        return self.path is not None and Path(self.path).exists()

    def load(self) -> dict:
        return load_checkpoint(self.path, fingerprint=self.fingerprint, config=self.config)

    def save(self, model, optimizer, epoch, best_state, bad_evals, history, *, finished) -> None:
        if self.path is None:
            return
        save_checkpoint(self.path, {
            "format": CHECKPOINT_FORMAT, "torch_version": str(torch.__version__),
            "fingerprint": self.fingerprint, "config": self.config,
            "epoch": epoch, "finished": finished, "bad_evals": bad_evals,
            "model": _cpu_copy(model.state_dict()), "optimizer": optimizer.state_dict(),
            "best_state": best_state, "history": history.to_dict(), "rng": _rng_states(),
        })


# ----------------------------------------------------------------------------- the loop


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[dict],
    loss_fn: Callable[[dict], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    params: list[nn.Parameter],
    *,
    grad_clip: float,
    epoch: int,
    progress: bool = True,
) -> float:
    """One pass over ``batches``: forward, NaN guard, backward, clip, step. Returns the mean loss.

    Raises ``NonFiniteLossError`` (epoch and step in the message) before the bad step is
    applied, so neither the weights nor the last checkpoint are touched by it.
    """
    device = model_device(model)
    model.train()
    total, steps = 0.0, 0
    bar = tqdm(batches, desc=f"epoch {epoch}", disable=not progress, leave=False)
    for step, batch in enumerate(bar, start=1):
        loss = loss_fn(to_device(batch, device))
        value = loss.item()
        if not np.isfinite(value):
            raise NonFiniteLossError(
                f"loss is {value} at epoch {epoch}, step {step}; the last good checkpoint "
                f"(end of epoch {epoch - 1}) is kept untouched: lower the learning rate or "
                "check the inputs, then re-run to resume from it"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        total, steps = total + value, steps + 1
        bar.set_postfix(loss=f"{value:.4f}")
    return total / max(steps, 1)


def fit(
    model: nn.Module,
    *,
    params: Iterable[nn.Parameter],
    train_batches: Callable[[int], Iterable[dict]],
    loss_fn: Callable[[dict], torch.Tensor],
    validate: Callable[[], dict],
    cfg: TrainConfig,
    checkpoint_path: Path | None,
    fingerprint: str,
    config: dict,
    progress: bool = True,
    log: Callable[[str], object] = print,
) -> History:
    """Train ``params`` (only those; the rest of ``model`` stays frozen) with AdamW and early stopping.

    ``train_batches(epoch)`` yields the batches of epoch ``epoch`` (1-based); for an exact
    resume it must draw its randomness from the global RNGs (restored from the checkpoint)
    or from a generator seeded by ``epoch``. ``validate()`` returns a metrics dict holding
    ``cfg.monitor`` (higher is better). ``fingerprint`` identifies the data and ``config``
    the run (``cfg`` is added to it, all but ``device``); a checkpoint made with other values
    is refused with ``CheckpointMismatchError``. The global RNGs are seeded with ``cfg.seed``
    at the start of a fresh run. At the end the best validated weights are in ``model``.
    """
    params = list(params)
    train_cfg = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "device"}
    run = _Run(checkpoint_path, fingerprint, _canonical({**config, "train_config": train_cfg}))
    # 1. AdamW over the trainable subset only, on the model's device.
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    history, best_state, bad_evals, start_epoch = History(monitor=cfg.monitor), None, 0, 1
    seed_everything(cfg.seed)
    # 2. Resume from the checkpoint if there is one (refused if made from other data/config).
    if run.exists():
        ckpt = run.load()
        history, best_state = History.from_dict(ckpt["history"]), ckpt["best_state"]
        if ckpt["finished"]:
            model.load_state_dict(best_state if best_state is not None else ckpt["model"])
            log(f"{checkpoint_path}: training had finished (best epoch {history.best_epoch}); not retraining")
            return history
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        bad_evals, start_epoch = ckpt["bad_evals"], ckpt["epoch"] + 1
        _set_rng_states(ckpt["rng"])
        log(f"resuming from {checkpoint_path} at epoch {start_epoch}")
    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg.max_epochs + 1):
        # 3. One pass over the training data (NaN guard inside).
        t0 = time.perf_counter()
        train_loss = train_one_epoch(model, train_batches(epoch), loss_fn, optimizer, params,
                                     grad_clip=cfg.grad_clip, epoch=epoch, progress=progress)
        # 4. Validate every eval_every epochs; keep a copy of the best weights.
        metrics = validate() if epoch % cfg.eval_every == 0 else {}
        if metrics:
            current = _monitored(metrics, cfg.monitor)
            if history.best_value is None or current > history.best_value:
                history.best_value, history.best_epoch, bad_evals = current, epoch, 0
                best_state = _cpu_copy(model.state_dict())
            else:
                bad_evals += 1
        history.stopped_early = bad_evals >= cfg.patience and epoch >= cfg.min_epochs
        history.record(epoch, train_loss, metrics, time.perf_counter() - t0)
        log(history.summary_line(-1))
        # 5. Checkpoint atomically every epoch (Ctrl-C loses at most one), then maybe stop early.
        run.save(model, optimizer, epoch, best_state, bad_evals, history, finished=False)
        if history.stopped_early:
            log(f"early stop: no {cfg.monitor} gain in the last {bad_evals} evaluations")
            break
    # 6. Load the best weights and mark the checkpoint finished.
    if best_state is not None:
        model.load_state_dict(best_state)
    run.save(model, optimizer, epoch, best_state, bad_evals, history, finished=True)
    return history
