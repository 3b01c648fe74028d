"""One run of the course: its data, settings, folder and seed, derived from a notebook's
papermill parameters by :func:`open_run`.

``open_run(**overrides)`` applies a notebook's parameters through ``Profile.replace``, the
same route as ``Context.replace``.

Also here, for notebooks and the pipeline: :func:`expect` (a training-derived check that is
strict on ml100k and a warning on other data) and :func:`lock_run_dir` (one writer per run
folder).
"""
from __future__ import annotations

import json
import os
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..data.preprocess import check_evaluable, load_dataset, subsample
from ..support.paths import data_folder, default_run_dir
from ..support.progress import capture_warnings
from ..support.runtime import resolve_device, seed_everything
from .config import get_profile
from .context import Context
from .epochs import RECIPES

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are then not protected against each other
    fcntl = None

STRICT_DATASETS = ("ml100k",)  # where the notebooks' expectations must hold (the default run)
STRICT_ENV = "FATSMB_STRICT"   # "1": every expectation is strict; "0": none is
LOCK_NAME = ".lock"


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
             data_dir: str | Path | None = None, seed: int = 0, recipe: str | None = None,
             **overrides) -> Context:
    """Everything a notebook derives from its papermill parameters, in one call.

    The profile adjusted for the dataset, with ``overrides`` applied (profile field -> value;
    a value of None keeps the profile's, so a notebook parameter left at None means "the
    profile's), after the named ``recipe`` of ``epochs.RECIPES`` if one is given (e.g.
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
    data_dir = data_folder(data_dir)
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
