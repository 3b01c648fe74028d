"""The training loop, in plain sight: one epoch, validation, checkpoints, early stopping.

``fit`` is the one loop all three FatsMB stages and every baseline use. It is written out
(numbered steps) rather than hidden in a Trainer class, because the loop is part of what
the notebooks teach. What changes between stages is passed in: which parameters train
(``params``; the rest stay frozen), how batches are made (``train_batches(epoch)``), the
loss (``loss_fn(batch)``) and validation (``validate() -> metrics``).

Randomness: every epoch starts by seeding the global generators with ``epoch_seed(seed,
epoch)`` (see :mod:`fatsmb_lib.support.runtime`), so dropout masks, diffusion noise and timesteps
differ from epoch to epoch, validation in between cannot change them, and a resumed run
draws exactly what an uninterrupted one drew.

Runs are resumable: a checkpoint is written atomically at the end of every epoch, so an
interrupted run (Ctrl-C, a crash, a killed job) loses at most one epoch, and re-running the
same call continues exactly where it stopped (weights, optimizer and early-stopping state).
A checkpoint from another dataset or another config is refused rather than silently reused;
one that cannot be read (empty, truncated, garbage, foreign, non-finite) is moved aside as
``<name>.corrupt-<time>`` with a warning, and training starts afresh.

The NaN guard watches the loss at every step and the weights and optimizer state after every
epoch, before anything is validated or written: a checkpoint on disk never holds NaN, so "the
last good checkpoint" named by :class:`NonFiniteError` is good.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm  # plain bars: no ipywidgets needed in notebooks

from ..support.checkpoints import (
    CHECKPOINT_FORMAT,
    CorruptCheckpointError,
    canonical,
    load_checkpoint,
    move_aside,
    non_finite,
    save_checkpoint,
)
from ..support.precision import autocast
from ..support.runtime import epoch_seed, model_device, seed_everything, to_device

FIT_KEYS = ("fingerprint", "config", "epoch", "finished", "bad_evals", "model", "optimizer",
            "best_state", "history")  # what a checkpoint written by fit holds


class CheckpointWarning(UserWarning):
    """A checkpoint could not be used and was moved aside; training starts afresh."""


class NonFiniteError(RuntimeError):
    """Training produced NaN or ±inf. The message has three parts: the ``problem`` (where),
    ``last_good`` (which checkpoint is intact, or that there is none) and ``advice`` (the call
    that gets round it); :meth:`explained` fills in the last two."""

    def __init__(self, problem: str, last_good: str = "", advice: str = ""):
        self.problem, self.last_good, self.advice = problem, last_good, advice
        super().__init__("; ".join(filter(None, (problem, last_good)))
                         + (f". {advice}" if advice else ""))

    def explained(self, last_good: str | None = None, advice: str | None = None) -> "NonFiniteError":
        """The same error with ``last_good`` and/or ``advice`` replaced."""
        return type(self)(self.problem, self.last_good if last_good is None else last_good,
                          self.advice if advice is None else advice)


class NonFiniteLossError(NonFiniteError):
    """The training loss became NaN or infinite."""


class NonFiniteWeightsError(NonFiniteError):
    """Weights or optimizer state became NaN or infinite (the loss may still look finite)."""


PAPER_LR = 2e-3  # AdamW's learning rate in the paper (Section 4.1.4): Profile's default


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and early-stopping settings of one ``fit`` call, built by
    ``Profile.train_config`` (the profile owns every value; there are no defaults here).

    ``monitor`` names a key of ``validate()``'s dict; higher is better (Recall/NDCG).
    ``patience`` counts evaluations, not epochs; no early stop before ``min_epochs``.
    ``grad_clip`` <= 0 disables clipping. ``warmup_epochs`` = w ramps the learning rate
    linearly over the first w epochs (epoch e <= w trains at lr·e/(w+1)); ``lr_decay`` = "cosine"
    then anneals it towards 0 at ``max_epochs`` ("none": constant).
    """

    lr: float
    weight_decay: float
    max_epochs: int
    patience: int
    min_epochs: int
    grad_clip: float
    monitor: str
    seed: int
    eval_every: int
    warmup_epochs: int
    lr_decay: str
    precision: str  # "fp32" | "bf16": the matmuls of the training forward pass

    def __post_init__(self) -> None:
        if self.lr_decay not in ("none", "cosine"):
            raise ValueError(f"lr_decay must be 'none' or 'cosine', got {self.lr_decay!r}")

    def lr_at(self, epoch: int) -> float:
        """Learning rate of epoch ``epoch`` (1-based), held constant within the epoch."""
        if epoch <= self.warmup_epochs:
            return self.lr * epoch / (self.warmup_epochs + 1)
        if self.lr_decay == "cosine":
            progress = (epoch - 1 - self.warmup_epochs) / max(self.max_epochs - self.warmup_epochs, 1)
            return self.lr * 0.5 * (1 + math.cos(math.pi * progress))
        return self.lr


@dataclass
class History:
    """What ``fit`` did, epoch by epoch (epochs are 1-based).

    ``val_metrics[i]`` is the validation dict of ``epochs[i]`` (``{}`` on epochs without
    validation, see ``TrainConfig.eval_every``). ``initial`` is the validation of the weights
    training started from, when ``fit`` was asked to count them as epoch 0 (``best_epoch`` 0:
    no epoch beat them, and the model keeps them).
    """

    monitor: str = "NDCG@10"
    epochs: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_metrics: list[dict] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    best_value: float | None = None
    stopped_early: bool = False
    initial: dict = field(default_factory=dict)

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


@dataclass
class _Run:
    """Where one ``fit`` call checkpoints, and what identifies it (no-op without a path).

    ``saved_epoch`` is the epoch of the checkpoint on disk (None: nothing written yet); every
    checkpoint written or loaded here has passed the NaN guard.
    """

    path: Path | None
    fingerprint: str
    config: dict
    saved_epoch: int | None = None

    def exists(self) -> bool:
        return self.path is not None and Path(self.path).exists()

    def load(self) -> dict:
        payload = load_checkpoint(self.path, fingerprint=self.fingerprint, config=self.config,
                                  required=FIT_KEYS)
        self.saved_epoch = payload["epoch"]
        return payload

    def last_good(self) -> str:
        """Which checkpoint survives a failure, in words."""
        if self.path is None:
            return "nothing is checkpointed (checkpoint_path=None)"
        if self.saved_epoch is None:
            return f"there is no good checkpoint: nothing was written to {self.path}"
        return (f"the last good checkpoint, {self.path} (end of epoch {self.saved_epoch}), "
                f"is kept untouched")

    def save(self, model, optimizer, epoch, best_state, bad_evals, history, *, finished) -> None:
        if self.path is None:
            return
        check_finite(model, optimizer, epoch)
        payload = {
            "format": CHECKPOINT_FORMAT, "torch_version": str(torch.__version__),
            "fingerprint": self.fingerprint, "config": self.config,
            "epoch": epoch, "finished": finished, "bad_evals": bad_evals,
            "model": _cpu_copy(model.state_dict()), "optimizer": optimizer.state_dict(),
            "best_state": best_state, "history": history.to_dict(),
        }
        try:
            save_checkpoint(self.path, payload)
        except OSError as exc:
            message = (f"could not write checkpoint {self.path} ({exc.strerror or exc}); "
                       f"{self.last_good()}. Free some disk space (or pass another run "
                       f"folder) and re-run the same call to resume.")
            raise (OSError(exc.errno, message) if exc.errno else OSError(message)) from exc
        self.saved_epoch = epoch


def check_finite(model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> None:
    """Raise ``NonFiniteWeightsError`` naming the first tensors of ``model`` or ``optimizer``'s
    state that hold NaN or ±inf after ``epoch``."""
    bad = non_finite(model.state_dict(), "model.") + non_finite(optimizer.state_dict()["state"],
                                                                 "optimizer state.")
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise NonFiniteWeightsError(f"weights became non-finite during epoch {epoch} ({shown}), "
                                    f"although the loss stayed finite; nothing of this epoch was "
                                    f"saved")


def _cpu_copy(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def _monitored(metrics: Mapping, monitor: str) -> float:
    if monitor not in metrics:
        raise KeyError(
            f"TrainConfig.monitor={monitor!r} is not among the validation metrics "
            f"{sorted(metrics)}: set monitor to one of them"
        )
    return float(metrics[monitor])


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
    precision: str = "fp32",
) -> float:
    """One pass over ``batches``: forward (its matmuls in ``precision``, see
    :mod:`fatsmb_lib.support.precision`), NaN guard, backward, clip, step. Returns the mean loss.

    Raises ``NonFiniteLossError`` (epoch and step in the message) before the bad step is
    applied, so neither the weights nor the last checkpoint are touched by it; ``fit`` adds
    which checkpoint is intact and what to do.
    """
    device = model_device(model)
    model.train()
    total, steps = 0.0, 0
    bar = tqdm(batches, desc=f"epoch {epoch}", disable=not progress, leave=False)
    for step, batch in enumerate(bar, start=1):
        with autocast(device, precision):
            loss = loss_fn(to_device(batch, device))
        value = loss.item()
        if not np.isfinite(value):
            raise NonFiniteLossError(f"loss is {value} at epoch {epoch}, step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        total, steps = total + value, steps + 1
        bar.set_postfix(loss=f"{value:.4f}")
    return total / max(steps, 1)


DIVERGED_ADVICE = ("Lower the learning rate (now {lr:g}) or check the inputs; fit refuses a "
                   "checkpoint made with other settings, so train with the new lr into another "
                   "checkpoint_path")


def _load_or_move_aside(run: _Run) -> dict | None:
    """The checkpoint of ``run``, or None after moving an unusable one aside with a warning."""
    try:
        return run.load()
    except CorruptCheckpointError as exc:
        aside = move_aside(run.path)
        warnings.warn(f"{exc}: moved it to {aside.name} and training from scratch",
                      CheckpointWarning, stacklevel=3)
        return None


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
    on_epoch: Callable[[str, History], object] | None = None,
    keep_initial: bool = False,
) -> History:
    """Train ``params`` (only those; the rest of ``model`` stays frozen) with AdamW and early stopping.

    ``train_batches(epoch)`` yields the batches of epoch ``epoch`` (1-based); for an exact
    resume its own randomness must be a function of ``epoch`` (``runtime.epoch_generator``).
    Every other draw of the epoch comes from the global generators, seeded here with
    ``epoch_seed(cfg.seed, epoch)`` before the epoch starts. ``validate()`` returns a metrics
    dict holding ``cfg.monitor`` (higher is better); it must not need the global generators.
    ``fingerprint`` identifies the data and ``config`` the run (``cfg`` is added to it); a
    checkpoint made with other values is refused with ``CheckpointMismatchError``; an unusable
    one is moved aside (``CheckpointWarning``) and training starts afresh. NaN or ±inf in the
    loss or, after an epoch, in the weights or optimizer state raises :class:`NonFiniteError`
    saying which checkpoint is intact. At the end the best validated weights are in ``model``.
    ``on_epoch(event, history)`` hears of every recorded epoch (``"epoch"``), of a resume
    (``"resumed"``) and of a finished checkpoint reloaded (``"reloaded"``): how a run shows
    its progress (:class:`fatsmb_lib.support.progress.ModelLine`). ``keep_initial``: validate
    the starting weights first and count them as epoch 0, so training can only keep or beat
    them on validation (stage 3 starts from stage 2's decoder).
    """
    report = on_epoch or (lambda event, history: None)
    params = list(params)
    run = _Run(checkpoint_path, fingerprint,
               canonical({**config, "train_config": dataclasses.asdict(cfg)}))
    # 1. AdamW over the trainable subset only, on the model's device.
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    history, best_state, bad_evals, start_epoch = History(monitor=cfg.monitor), None, 0, 1
    # 2. Resume from the checkpoint if there is one (refused if made from other data/config;
    #    moved aside if unusable).
    ckpt = _load_or_move_aside(run) if run.exists() else None
    if ckpt is not None:
        history, best_state = History.from_dict(ckpt["history"]), ckpt["best_state"]
        if ckpt["finished"]:
            model.load_state_dict(best_state if best_state is not None else ckpt["model"])
            log(f"{checkpoint_path}: training had finished (best epoch {history.best_epoch}); not retraining")
            report("reloaded", history)
            return history
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        bad_evals, start_epoch = ckpt["bad_evals"], ckpt["epoch"] + 1
        log(f"resuming from {checkpoint_path} at epoch {start_epoch}")
        report("resumed", history)
    epoch = start_epoch - 1
    if keep_initial and start_epoch == 1:
        history.initial = validate()
        history.best_value, history.best_epoch = _monitored(history.initial, cfg.monitor), 0
        best_state = _cpu_copy(model.state_dict())
    for epoch in range(start_epoch, cfg.max_epochs + 1):
        # 3. One pass over the training data (NaN guard inside), from this epoch's own seed.
        t0 = time.perf_counter()
        seed_everything(epoch_seed(cfg.seed, epoch))
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr_at(epoch)
        try:
            train_loss = train_one_epoch(model, train_batches(epoch), loss_fn, optimizer, params,
                                         grad_clip=cfg.grad_clip, epoch=epoch, progress=progress,
                                         precision=cfg.precision)
            check_finite(model, optimizer, epoch)   # the loss can look fine while weights are not
        except NonFiniteError as exc:
            raise exc.explained(run.last_good(), DIVERGED_ADVICE.format(lr=cfg.lr)) from None
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
        report("epoch", history)
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
