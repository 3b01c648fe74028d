"""A study's ledger: its results per (cell, seed) in one JSON file, rewritten after every run.

The long studies (``diffusion_map``, ``few_shot``) train for hours on CPU. Their ledger is the
resume point that survives a fresh checkout (checkpoints are git-ignored, the ledger is
committed): a run already in it is never repeated, and an interruption loses at most the run
in progress (whose checkpoints resume it at the last finished epoch). Several processes may
share one ledger (one per seed or per model, side by side): each check and each write first
reads back what the others recorded, so a run another process finished is not repeated.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..support.checkpoints import write_text


class Ledger:
    """``{"meta": {...}, "cells": {cell: {seed: row}}}`` at ``path``.

    ``meta`` says what the runs were made under (profile, dataset, ...): reopening a ledger
    with other values is refused, so rows made under different settings never mix.
    """

    def __init__(self, path: Path, **meta) -> None:
        self.path = path
        found = json.loads(path.read_text()) if path.is_file() else {"meta": meta, "cells": {}}
        clash = {k: (found["meta"].get(k), v) for k, v in meta.items()
                 if k in found["meta"] and found["meta"][k] != v}
        if clash:
            raise ValueError(f"{path} holds runs made under other settings "
                             + ", ".join(f"{k}={old!r} (asked: {new!r})"
                                         for k, (old, new) in clash.items())
                             + ": pass another output folder to keep both")
        self.meta = {**found["meta"], **meta}
        self.cells: dict[str, dict[str, dict]] = found["cells"]

    def done(self, cell: str, seed: int) -> bool:
        self._read_back()
        return str(seed) in self.cells.get(cell, {})

    def runs(self, cell: str) -> dict[str, dict]:
        """{seed: row} of ``cell`` (empty if none)."""
        return self.cells.get(cell, {})

    def record(self, cell: str, seed: int, row: dict) -> None:
        """Add one run and rewrite the file (atomically), keeping the runs other processes
        recorded in it since this one read it."""
        self._read_back()
        self.cells.setdefault(cell, {})[str(seed)] = row
        self.save()

    def _read_back(self) -> None:
        """Merge in the runs other processes wrote to the file since this one read it."""
        if self.path.is_file():
            for name, runs in json.loads(self.path.read_text())["cells"].items():
                self.cells[name] = {**runs, **self.cells.get(name, {})}

    def save(self) -> None:
        write_text(self.path, json.dumps({"meta": self.meta, "cells": self.cells}, indent=2)
                   + "\n")
