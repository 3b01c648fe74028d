"""The run a stage function trains in: its data, settings, folder, device and seed.

A :class:`Context` is what every training function takes (``training.stages``,
``training.peers``). It knows where checkpoints go and how to validate, and it is the one
route by which settings change: ``ctx.replace(**overrides)`` goes through ``Profile.replace``.
:func:`fatsmb_lib.training.run.open_run` makes one from a notebook's parameters.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from ..data.batches import PrefixView, make_loader
from ..data.preprocess import SequenceData
from ..support.checkpoints import settings_digest
from ..support.progress import ModelLine
from ..support.runtime import epoch_seed, make_generator, resolve_device, seed_everything
from .evaluate import evaluate, recommend
from .train import PAPER_LR, History, NonFiniteError, fit

# Rows per batch of every pass without gradients (evaluation, prefix latents). 256 keeps a
# batch's activations in cache: on ml100k, 2 threads, the prefix-latent pass runs 1.6x and
# full-ranking inference 1.1x the speed of 1024 rows, and a process peaks ~270 MiB lower
# (measured with `python -m fatsmb_lib.studies.bench`); the metrics are identical.
EVAL_BATCH = 256

@dataclass
class Context:
    """What every stage needs: the data, the profile, where to checkpoint, and how to report."""

    data: SequenceData
    profile: Any                    # a training.config.Profile
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
            train_batches, loss_fn, settings: dict, keep_initial: bool = False) -> History:
        """``train.fit`` with this run's checkpoint path, data fingerprint and validation.

        ``settings`` holds everything else that shapes the weights (model sizes, masking,
        data view, batch size, earlier stages' fingerprints); the optimisation settings of
        ``stage`` are added here. ``keep_initial``: the starting weights count as epoch 0
        (``train.fit``), which is part of the digest when set.
        """
        cfg = self.profile.train_config(stage, self.seed)
        settings = {**settings, "train": dataclasses.asdict(cfg)}
        if keep_initial:
            settings["keep_initial"] = True
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
                          on_epoch=on_epoch, keep_initial=keep_initial)
        except NonFiniteError as exc:
            line.close()
            lower = min(cfg.lr / 10, PAPER_LR)
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
                         item_keys=data.item_keys, user=u,
                         generator=make_generator(self.seed, self.device))
