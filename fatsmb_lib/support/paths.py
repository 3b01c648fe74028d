"""Where things are: the checkout, its data folder and the runs' scratch folders."""
from __future__ import annotations

from pathlib import Path


def project_root(start: Path | None = None) -> Path:
    """The checkout's root: the first folder upwards holding this project's pyproject.toml.

    Notebooks run with their own folder as the working directory (JupyterLab, nbval) while
    papermill runs them from the caller's; resolving every path from here makes both work.
    """
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and 'name = "fatsmb_lib"' in pyproject.read_text():
            return folder
    # this file is <checkout>/fatsmb_lib/support/paths.py
    package_parent = Path(__file__).resolve().parents[2]
    if (package_parent / "pyproject.toml").is_file():
        return package_parent
    raise FileNotFoundError(
        f"no fatsmb_lib checkout found above {here}: run from inside the repository"
    )


def data_folder(data_dir: str | Path | None = None) -> Path:
    """``data_dir`` if given, else the checkout's ``data/`` (the one default of every
    ``data_dir`` argument and ``--data-dir`` option); outside a checkout, ``./data``."""
    if data_dir:
        return Path(data_dir)
    try:
        return project_root() / "data"
    except FileNotFoundError:
        return Path.cwd() / "data"


def default_run_dir(dataset: str, profile: str) -> Path:
    """Scratch folder for interactive and nbval runs (git-ignored): runs/<dataset>-<profile>."""
    return project_root() / "runs" / f"{dataset}-{profile}"
