"""The students' copy of the course: ``python -m fatsmb_lib.course.student`` (``make student``).

Every notebook of the course (``notebooks/NN_*.ipynb``, the glossary included) is written to
``student/`` (git-ignored) without its exercise solutions: the cells tagged ``solution`` (a
solution's code cell, and the markdown cell that may precede it with its explanation).
Everything else is kept as it is: the other cells, their outputs of the committed ``default``
run, the metadata.

A rebuild overwrites only the copies it wrote itself: ``student/.build.json`` records a digest
of each file written, and a copy that changed since (a student's work) stops the build unless
``--force`` is given (``make student FORCE=1``).
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
from pathlib import Path

import nbformat

from ..support.checkpoints import write_text
from ..support.paths import project_root
from .pipeline import course_notebooks

SOLUTION_TAG = "solution"
MANIFEST = ".build.json"


def is_solution(cell) -> bool:
    """Whether a notebook cell is (part of) an exercise solution: tagged ``solution``."""
    return SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])


def solution_cells(notebook) -> list:
    """The cells of ``notebook`` (an nbformat node) tagged ``solution``, in order."""
    return [cell for cell in notebook.cells if is_solution(cell)]


def strip_solutions(notebook):
    """A copy of ``notebook`` without its ``solution`` cells; every other cell unchanged."""
    stripped = copy.deepcopy(notebook)
    stripped.cells = [cell for cell in stripped.cells if not is_solution(cell)]
    return stripped


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_student_copy(out_dir: Path | None = None, notebooks_dir: Path | None = None,
                       force: bool = False) -> dict[Path, int]:
    """Write every course notebook without its solutions to ``out_dir`` (default
    ``<repo>/student``); returns {written path: number of solution cells removed}.

    Raises ``FileExistsError`` (before writing anything) when a copy there was changed since
    the last build, unless ``force``.
    """
    out_dir = Path(out_dir or project_root() / "student")
    sources = course_notebooks(notebooks_dir=notebooks_dir)
    if not sources:
        raise FileNotFoundError(f"no course notebook (NN_*.ipynb) in {notebooks_dir or 'notebooks/'}")
    manifest_file = out_dir / MANIFEST
    built = json.loads(manifest_file.read_text()) if manifest_file.exists() else {}
    changed = [out_dir / nb.name for nb in sources
               if (out_dir / nb.name).exists() and built.get(nb.name) != _digest(out_dir / nb.name)]
    if changed and not force:
        raise FileExistsError(
            f"{', '.join(str(p) for p in changed)} changed since the last build (your work?): "
            f"move it elsewhere, or rebuild with --force (make student FORCE=1) to overwrite it")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for source in sources:
        notebook = nbformat.read(source, as_version=4)
        target = out_dir / source.name
        nbformat.write(strip_solutions(notebook), target)
        built[source.name] = _digest(target)
        written[target] = len(solution_cells(notebook))
    write_text(manifest_file, json.dumps(built, indent=1, sort_keys=True) + "\n")
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fatsmb_lib.course.student",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="output folder (default: <repo>/student)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite copies changed since the last build")
    args = parser.parse_args(argv)
    try:
        written = build_student_copy(Path(args.out) if args.out else None, force=args.force)
    except FileExistsError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    print(f"student copy in {next(iter(written)).parent}, solution cells removed: "
          + ", ".join(f"{path.stem} {n}" for path, n in written.items()))


if __name__ == "__main__":
    main()
