"""What a run shows while it works: one line per trained model, and the events the pipeline
prints on its console.

- :class:`ModelLine` — one compact line per model that ``fit`` trains, rewritten in place after
  every epoch (``mbae-barope  epoch 3/4  loss 7.1234  valid NDCG@10 0.0412  126 s``) and left
  as a one-line summary when the model is done or reloaded from its checkpoint. It is a plain
  ``tqdm`` bar (no widgets): text rewritten with ``\\r``, which terminals and JupyterLab show in
  place and which a saved notebook keeps as its last state (JupyterLab folds the rewrites when
  it saves; the pipeline asks papermill to do the same, ``coalesce_streams``).
- The event log. While the pipeline runs a notebook it sets the environment variable
  :data:`EVENTS_ENV` to a file; each model line (:func:`emit`) and every warning the notebook
  raises (:func:`capture_warnings`, installed by ``open_run``) append one JSON line to it, and
  the pipeline prints them on its console as they come (:class:`EventTail`) and lists the
  warnings again in its summary.

Why a file the pipeline tails rather than papermill's ``log_output=True``: that streams every
output of every cell (tables, figures' reprs, each in-place rewrite as a new line) while the
console needs one line per model and the warnings; the file carries only those, attributed to
the notebook that raised them, and is still there for the summary when a notebook fails.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Callable

from tqdm import tqdm  # plain bars: no ipywidgets needed in notebooks

EVENTS_ENV = "FATSMB_EVENTS"   # the pipeline's event file, inherited by the notebooks' kernels
THROTTLE_S = 60.0              # without a terminal, the console shows an epoch line at most this often


def emit(kind: str, text: str) -> None:
    """Append one event (``kind`` = "epoch" | "model" | "warning") to the pipeline's event file;
    nothing when no pipeline is listening (``$FATSMB_EVENTS`` unset)."""
    path = os.environ.get(EVENTS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"kind": kind, "text": text}) + "\n")


def capture_warnings() -> None:
    """While a pipeline listens, copy every warning shown in this process to its event file
    (the warning is still shown as usual). Installed once; a no-op outside the pipeline."""
    if not os.environ.get(EVENTS_ENV) or getattr(warnings.showwarning, "emits_events", False):
        return
    shown = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        emit("warning", f"{category.__name__}: {message}")
        shown(message, category, filename, lineno, file, line)

    showwarning.emits_events = True
    warnings.showwarning = showwarning


def _seconds(history) -> str:
    return f"{sum(history.seconds):.0f} s"


def epoch_text(name: str, history, total: int) -> str:
    """``name  epoch k/N  loss x  valid NDCG@10 y  t s`` for the last recorded epoch."""
    parts = [name, f"epoch {history.epochs[-1]}/{total}", f"loss {history.train_loss[-1]:.4f}"]
    value = history.val_metrics[-1].get(history.monitor)
    if value is not None:
        parts.append(f"valid {history.monitor} {value:.4f}")
    return "  ".join([*parts, _seconds(history)])


def final_text(name: str, history, total: int, reloaded: bool) -> str:
    """The line a model leaves: its epochs, last loss, best validation and training time."""
    if not history.epochs:
        return f"{name}  no epoch trained (max_epochs={total})"
    best = (f"best valid {history.monitor} {history.best_value:.4f} (epoch {history.best_epoch})"
            if history.best_value is not None else "not validated")
    epochs = f"{history.epochs[-1]}/{total} epochs"
    if history.stopped_early:
        epochs += " (stopped early)"
    if reloaded:
        return f"{name}  reloaded: {epochs}, {best}, trained in {_seconds(history)}"
    return "  ".join([name, epochs, f"loss {history.train_loss[-1]:.4f}", best, _seconds(history)])


class ModelLine:
    """One model's line: created before ``fit``, :meth:`update` after each epoch (and once on
    resume), :meth:`finish` after it (or :meth:`close` when it fails). ``show=False`` keeps
    it off the output; the events are written either way (when a pipeline listens)."""

    def __init__(self, name: str, total: int, show: bool = True):
        self.name, self.total = name, total
        self.bar = tqdm(total=total, desc=f"{name}  starting", bar_format="{desc}",
                        file=sys.stdout, disable=not show, leave=True)

    def update(self, event: str, history) -> None:
        if event == "reloaded" or not history.epochs:
            return
        text = epoch_text(self.name, history, self.total)
        if event == "resumed":
            text += "  (resumed from its checkpoint)"
        self.bar.n = history.epochs[-1]
        self.bar.set_description_str(text)
        emit("epoch", text)

    def finish(self, history, reloaded: bool = False) -> None:
        text = final_text(self.name, history, self.total, reloaded)
        self.bar.set_description_str(text, refresh=True)
        self.bar.close()
        emit("model", text)

    def close(self) -> None:
        self.bar.close()


class Console:
    """The pipeline's console: permanent lines through ``log``, and in a terminal one line
    that epoch events rewrite in place (elsewhere, e.g. a log file, an epoch line at most every
    :data:`THROTTLE_S` seconds). Safe to call from the tail's thread."""

    def __init__(self, log: Callable[[str], object] = print):
        self.log = log
        self.tty = log is print and sys.stdout.isatty()
        self.width, self.last = 0, time.monotonic()
        self.lock = threading.Lock()

    def transient(self, text: str) -> None:
        with self.lock:
            if self.tty:
                sys.stdout.write("\r" + text.ljust(self.width))
                sys.stdout.flush()
                self.width = len(text)
            elif time.monotonic() - self.last >= THROTTLE_S:
                self.log(text)
                self.last = time.monotonic()

    def line(self, text: str) -> None:
        with self.lock:
            if self.tty and self.width:
                sys.stdout.write("\r" + " " * self.width + "\r")
                self.width = 0
            self.log(text)
            self.last = time.monotonic()


class EventTail:
    """Print the events the notebooks append to ``path`` while they run (a thread polls the
    file), each prefixed with the notebook running; collect the warnings. Set :attr:`notebook`
    before each notebook and call :meth:`poll` after it, so every event is attributed to the
    notebook that wrote it. A warning that several notebooks raise (each loads the data) is
    printed once and listed once, with the notebooks that raised it."""

    def __init__(self, path: Path, console: Console, interval: float = 0.5):
        self.path, self.console, self.interval = Path(path), console, interval
        self.path.write_text("", encoding="utf-8")
        self.position, self.pending, self.notebook = 0, b"", ""
        self.raised: dict[str, list[str]] = {}      # warning -> the notebooks that raised it
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "EventTail":
        self.previous = os.environ.get(EVENTS_ENV)
        os.environ[EVENTS_ENV] = str(self.path)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()
        self.poll()
        if self.previous is None:
            os.environ.pop(EVENTS_ENV, None)
        else:
            os.environ[EVENTS_ENV] = self.previous

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.poll()

    def poll(self) -> None:
        """Handle every complete line written since the last poll."""
        with self.lock:
            try:
                with open(self.path, "rb") as f:
                    f.seek(self.position)
                    chunk = f.read()
            except OSError:
                return
            self.position += len(chunk)
            *lines, self.pending = (self.pending + chunk).split(b"\n")
            for line in lines:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                self._handle(event.get("kind"), str(event.get("text", "")))

    @property
    def warnings(self) -> list[str]:
        """Each warning once, after the notebooks that raised it: ``[01_x, 02_y] text``."""
        return [f"[{', '.join(notebooks)}] {text}" if notebooks[0] else text
                for text, notebooks in self.raised.items()]

    def _handle(self, kind: str, text: str) -> None:
        prefix = f"[{self.notebook}] " if self.notebook else ""
        if kind == "epoch":
            self.console.transient(prefix + text)
        elif kind == "warning":
            notebooks = self.raised.setdefault(text, [])
            if not notebooks:
                self.console.line(f"{prefix}warning: {text}")
            if self.notebook not in notebooks:
                notebooks.append(self.notebook)
        else:
            self.console.line(prefix + text)
