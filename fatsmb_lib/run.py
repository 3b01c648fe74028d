"""One run of the course: its data, settings, folder and seed, derived from a notebook's
papermill parameters by :func:`open_run`.

A :class:`Context` is what every stage function takes. It knows where checkpoints go and how
to validate, and it is the one route by which settings change: ``open_run(**overrides)`` and
``ctx.replace(**overrides)`` both go through ``Profile.replace``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn

from .batches import PrefixView, make_loader
from .checkpoints import settings_digest
from .config import Profile, default_run_dir, get_profile, project_root
from .evaluate import evaluate
from .preprocess import SequenceData, load_dataset
from .runtime import epoch_seed, make_generator, resolve_device, seed_everything
from .train import History, fit

EVAL_BATCH = 1024  # evaluation rows per batch (no gradients: memory is B × N scores)


@dataclass
class Context:
    """What every stage needs: the data, the profile, where to checkpoint, and how to report."""

    data: SequenceData
    profile: Profile
    run_dir: Path
    device: torch.device = field(default_factory=lambda: resolve_device("auto"))
    seed: int = 0
    progress: bool = False
    log: Callable[[str], object] = print

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
        return fit(model, params=params, train_batches=train_batches, loss_fn=loss_fn,
                   validate=lambda: self.evaluate(model, "valid"), cfg=cfg,
                   checkpoint_path=self.checkpoint_path(name, settings),
                   fingerprint=self.data.fingerprint, config=settings, progress=self.progress,
                   log=self.log)


def open_run(dataset: str, profile: str, device: str = "auto", run_dir: str | Path = "",
             data_dir: str | Path = "", seed: int = 0, **overrides) -> Context:
    """Everything a notebook derives from its papermill parameters, in one call.

    The profile adjusted for the dataset, with ``overrides`` applied (profile field -> value;
    a value of None keeps the profile's, so a notebook parameter left at None means "the
    profile's"); ``data_dir`` empty -> ``<repo>/data``; ``run_dir`` empty ->
    ``runs/<dataset>-<profile>`` (created); the data loaded; the global generators seeded
    (for the notebook's own demonstrations). Training logs are silenced (notebooks print
    their own summaries).
    """
    settings = get_profile(profile, dataset)
    settings = settings.replace(**{k: v for k, v in overrides.items() if v is not None})
    data = load_dataset(dataset, Path(data_dir) if data_dir else project_root() / "data")
    run_dir = Path(run_dir) if run_dir else default_run_dir(dataset, profile)
    run_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    return Context(data, settings, run_dir, device=resolve_device(device), seed=seed,
                   progress=False, log=lambda line: None)
