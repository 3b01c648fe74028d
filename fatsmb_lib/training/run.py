"""One run of the course: its data, settings, folder and seed, derived from a notebook's
papermill parameters by :func:`open_run`.

A :class:`Context` is what every stage function takes. It knows where checkpoints go and how
to validate, and it is the one route by which settings change: ``open_run(**overrides)`` and
``ctx.replace(**overrides)`` both go through ``Profile.replace``.

Also here, for notebooks and the pipeline: :func:`expect` (a training-derived check that is
strict on ml100k and a warning on other data) and :func:`lock_run_dir` (one writer per run
folder).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from ..data.batches import PrefixView, make_loader
from ..support.checkpoints import settings_digest
from .config import PROFILES, RECIPES, Profile, default_run_dir, get_profile, project_root
from .evaluate import evaluate, recommend
from ..data.preprocess import SequenceData, check_evaluable, load_dataset, subsample
from ..support.progress import ModelLine, capture_warnings
from ..support.runtime import epoch_seed, make_generator, resolve_device, seed_everything
from .train import History, NonFiniteError, fit

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are then not protected against each other
    fcntl = None

# Rows per batch of every pass without gradients (evaluation, prefix latents). 256 keeps a
# batch's activations in cache: on ml100k, 2 threads, the prefix-latent pass runs 1.6x and
# full-ranking inference 1.1x the speed of 1024 rows, and a process peaks ~270 MiB lower
# (measured with `python -m fatsmb_lib.studies.bench`); the metrics are identical.
EVAL_BATCH = 256
STRICT_DATASETS = ("ml100k",)  # where the notebooks' expectations must hold (the default run)
STRICT_ENV = "FATSMB_STRICT"   # "1": every expectation is strict; "0": none is
LOCK_NAME = ".lock"


@dataclass
class Context:
    """What every stage needs: the data, the profile, where to checkpoint, and how to report."""

    data: SequenceData
    profile: Profile
    run_dir: Path
    device: torch.device = field(default_factory=lambda: resolve_device("auto"))
    seed: int = 0
    progress: bool = False          # a bar over each epoch's batches
    log: Callable[[str], object] = print
    dataset: str = ""  # the name it was opened with (for messages and expect())
    model_lines: bool = True        # one line per trained model (progress.ModelLine)

    def replace(self, **overrides) -> "Context":
        """The same run (data, folder, seed) with some profile fields changed."""
        return dataclasses.replace(self, profile=self.profile.replace(**overrides))

    def loader(self, split: str) -> torch.utils.data.DataLoader:
        """Evaluation batches (one row per user) for ``split`` = "valid" | "test"."""
        return make_loader(PrefixView(self.data, self.profile.max_len, split), EVAL_BATCH, False)

    def evaluate(self, model: nn.Module, split: str = "valid") -> dict:
        """Full-ranking metrics on ``split``. Sampling models draw from a generator of this
        run's seed, created afresh for every call: the same model gives the same numbers, and
        the global generators (training's) are never touched."""
        return evaluate(model, self.loader(split), behavior_names=self.data.behavior_names,
                        device=self.device, generator=make_generator(self.seed, self.device))

    def build(self, factory: Callable[..., nn.Module], *args) -> nn.Module:
        """``factory(*args)`` on this run's device, its initial weights drawn from the global
        generators seeded with ``epoch_seed(seed, 0)``: a function of the seed alone."""
        seed_everything(epoch_seed(self.seed, 0))
        return factory(*args).to(self.device)

    def checkpoint_path(self, name: str, settings: dict) -> Path:
        """``<run_dir>/<name>-<digest of settings>-seed<seed>.pt``: every setting that changes
        the trained weights is in ``settings``, so changing one trains a new file."""
        return self.run_dir / f"{name}-{settings_digest(settings)}-seed{self.seed}.pt"

    def fit(self, model: nn.Module, name: str, stage: str, params: Iterable[nn.Parameter],
            train_batches, loss_fn, settings: dict) -> History:
        """``train.fit`` with this run's checkpoint path, data fingerprint and validation.

        ``settings`` holds everything else that shapes the weights (model sizes, masking,
        data view, batch size, earlier stages' fingerprints); the optimisation settings of
        ``stage`` are added here.
        """
        cfg = self.profile.train_config(stage, self.seed)
        settings = {**settings, "train": dataclasses.asdict(cfg)}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.checkpoint_path(name, settings)
        line, events = ModelLine(name, cfg.max_epochs, show=self.model_lines), []

        def on_epoch(event: str, history: History) -> None:
            events.append(event)
            line.update(event, history)
        try:
            history = fit(model, params=params, train_batches=train_batches, loss_fn=loss_fn,
                          validate=lambda: self.evaluate(model, "valid"), cfg=cfg,
                          checkpoint_path=path, fingerprint=self.data.fingerprint,
                          config=settings, progress=self.progress, log=self.log,
                          on_epoch=on_epoch)
        except NonFiniteError as exc:
            line.close()
            lower = min(cfg.lr / 10, PROFILES["default"].lr)
            raise exc.explained(advice=(
                f"Lower the learning rate (now {cfg.lr:g}) and re-run: ctx = ctx.replace(lr="
                f"{lower:g}), then call the same stage function again (or open_run(..., lr="
                f"{lower:g}) in a notebook's first cell). The lr is part of the checkpoint's file "
                f"name, so the new lr trains its own file instead of being refused by {path.name}"
            )) from None
        except BaseException:
            line.close()
            raise
        line.finish(history, reloaded=events == ["reloaded"])
        return history

    def recommend(self, model: nn.Module, user, behavior: str | int, k: int = 10) -> list[tuple]:
        """Top-k items for one user of this run's dataset under a target behavior, in the
        dataset's own terms: ``user`` is a user id as in the raw file, ``behavior`` a name
        (e.g. "buy") or an id; returns ``[(item id as in the raw file, title or that id), ...]``.

        The history is the user's whole sequence (every interaction the data hold, test item
        included). For internal ids use :func:`fatsmb_lib.training.evaluate.recommend` directly.
        """
        data = self.data
        rows = np.flatnonzero(data.user_keys.astype(str) == str(user))
        if len(rows) == 0:
            raise KeyError(f"user {user!r} is not in {self.dataset or data.source} (users with "
                           f"fewer than min_uc interactions are dropped); some users: "
                           f"{', '.join(map(str, data.user_keys[:3].tolist()))}")
        if isinstance(behavior, str):
            if behavior not in data.behavior_names:
                raise ValueError(f"behavior {behavior!r} is not one of {data.behavior_names}")
            behavior = data.behavior_names.index(behavior) + 1
        u = int(rows[0])
        history = slice(data.offsets[u], data.offsets[u + 1])
        return recommend(model, data.seq_items[history], data.seq_behaviors[history], behavior,
                         n_items=data.n_items, n_behaviors=data.n_behaviors,
                         max_len=self.profile.max_len, k=k, titles=data.item_titles,
                         item_keys=data.item_keys, generator=make_generator(self.seed, self.device))


class ExpectationWarning(UserWarning):
    """An :func:`expect` check failed on data where it is allowed to (not ml100k)."""


def expect(condition, what: str, why_it_may_fail: str, *, dataset: str,
           strict: bool | None = None) -> bool:
    """A check on trained results in a notebook (e.g. "the MBAE beats popularity").

    Strict (``AssertionError``) on the datasets of the default run (:data:`STRICT_DATASETS`,
    i.e. ml100k, which nbval and ``make test`` execute), or everywhere when the environment
    variable ``FATSMB_STRICT=1`` (``0``: nowhere); ``strict`` overrides both. Elsewhere, e.g.
    on a small dataset of your own, a failed expectation only warns (``ExpectationWarning``)
    with ``why_it_may_fail``, and the notebook goes on. Returns ``bool(condition)``.
    """
    if strict is None:
        env = os.environ.get(STRICT_ENV, "")
        strict = env == "1" if env in ("0", "1") else dataset in STRICT_DATASETS
    if bool(condition):
        return True
    if strict:
        raise AssertionError(
            f"expected {what}, but it does not hold on {dataset}; it holds in the default run, "
            f"so look for a regression or a changed setting (set {STRICT_ENV}=0 to only warn)")
    warnings.warn(f"expected {what}, but it does not hold on {dataset}. This may not hold on "
                  f"small or custom data: {why_it_may_fail}. The notebook goes on.",
                  ExpectationWarning, stacklevel=2)
    return False


class RunLockedError(RuntimeError):
    """Another process is writing the run folder."""


@contextmanager
def lock_run_dir(run_dir: str | Path, hint: str = "wait or pass --run NAME") -> Iterator[Path]:
    """Hold ``<run_dir>/.lock`` (``fcntl.flock``) while two runs could collide in one folder.

    The lock belongs to the open file, so the kernel releases it when this process exits,
    crashes or is killed: a stale lock file never blocks anyone. A second holder gets
    :class:`RunLockedError` naming the first one's pid and start time, and ``hint``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    with open(path, "a+", encoding="utf-8") as f:
        if fcntl is not None:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                try:
                    holder = json.loads(f.read() or "{}")
                except json.JSONDecodeError:
                    holder = {}
                raise RunLockedError(
                    f"another run (pid {holder.get('pid', '?')}, started "
                    f"{holder.get('started', '?')}) is writing {run_dir}; {hint}") from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
        f.flush()
        try:
            yield path
        finally:
            f.seek(0)
            f.truncate()   # the lock itself goes with the file's closing


def open_run(dataset: str, profile: str, device: str = "auto", run_dir: str | Path = "",
             data_dir: str | Path = "", seed: int = 0, recipe: str | None = None,
             **overrides) -> Context:
    """Everything a notebook derives from its papermill parameters, in one call.

    The profile adjusted for the dataset, with ``overrides`` applied (profile field -> value;
    a value of None keeps the profile's, so a notebook parameter left at None means "the
    profile's), after the named ``recipe`` of ``config.RECIPES`` if one is given (e.g.
    ``recipe="paper"``); ``data_dir`` empty -> ``<repo>/data``; ``run_dir`` empty ->
    ``runs/<dataset>-<profile>`` (created); the data loaded, cut to the profile's
    ``max_users`` / ``max_history`` (smoke's bound on any data) and refused when too small to
    evaluate (``preprocess.check_evaluable``); the global generators seeded (for the
    notebook's own demonstrations). Each trained model shows one line that updates after every
    epoch (``progress.ModelLine``); the per-epoch log lines are silenced. Under the pipeline,
    warnings and model lines also go to its console (``progress.capture_warnings``).

    Validates the parameters cheapest first, before any data are read: the device (a
    misspelling gets the same advice as a missing GPU), the profile and the dataset (built-in
    or registered in ``data_dir``), then each override's name.
    """
    capture_warnings()
    torch_device = resolve_device(device)
    data_dir = Path(data_dir) if data_dir else project_root() / "data"
    settings = get_profile(profile, dataset, data_dir)
    if recipe is not None:
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}: choose one of {sorted(RECIPES)}")
        settings = settings.replace(**RECIPES[recipe])
    settings = settings.replace(**{k: v for k, v in overrides.items() if v is not None})
    data = subsample(load_dataset(dataset, data_dir), settings.max_users, settings.max_history)
    check_evaluable(data, dataset)
    run_dir = Path(run_dir) if run_dir else default_run_dir(dataset, profile)
    run_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    return Context(data, settings, run_dir, device=torch_device, seed=seed,
                   progress=False, log=lambda line: None, dataset=dataset)
