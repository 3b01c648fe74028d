"""The conda environment and the package declare the same dependencies."""
import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge name -> PyPI name


def _split(spec: str) -> tuple[str, str]:
    name, version = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", spec.strip()).groups()
    return name.lower().replace("_", "-"), version.replace(" ", "")


def test_environment_yml_matches_pyproject():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = dict(_split(s) for s in pyproject["project"]["dependencies"])

    conda = {}
    text = (ROOT / "environment.yml").read_text()
    for line in text.split("dependencies:", 1)[1].splitlines():
        m = re.match(r"^  - ([A-Za-z].*)$", line)  # top-level conda dependencies only
        if m and not m.group(1).startswith(("python", "pip")):
            name, version = _split(m.group(1))
            conda[CONDA_NAMES.get(name, name)] = version

    assert conda == declared, "environment.yml and pyproject.toml list different dependencies"


def test_environment_yml_installs_the_package():
    assert re.search(r"^\s+- -e \.$", (ROOT / "environment.yml").read_text(), re.M)
