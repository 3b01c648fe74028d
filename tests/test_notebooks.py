"""Every notebook source (.py, jupytext percent) and its committed .ipynb hold the same cells,
every executed notebook defines the parameters the pipeline passes and links the glossary
(``00_notation``, markdown only, never executed), and the executed copies committed under
``reports/`` were executed from the current notebooks."""
import re
import subprocess
from pathlib import Path

import jupytext
import nbformat
import papermill
import pytest

from fatsmb_lib.course.pipeline import (
    COMMON_PARAMETERS,
    course_notebooks,
    executed_cells,
    notebook_sequence,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
EXECUTED = [p for p in NOTEBOOKS if not p.name.startswith("00_")]
GLOSSARY = ROOT / "notebooks" / "00_notation.ipynb"
# the sections notebooks 01-04 link to (00_notation.ipynb#<anchor>)
GLOSSARY_HEADINGS = ("## Glossary", "## Primer: Cloze (BERT4Rec)", "## Primer: RoPE",
                     "## Primer: DDPM and DDIM", "## Primer: classifier-free guidance",
                     "## Primer: adaLN and DiT")


def _cells(notebook):
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_pair_agrees_by_content(source):
    paired = source.with_suffix(".ipynb")
    assert paired.exists(), f"{source.name} has no paired {paired.name}: run `jupytext --sync {source}`"
    assert _cells(jupytext.read(source)) == _cells(jupytext.read(paired)), (
        f"{source.name} and {paired.name} differ: run `jupytext --sync {source}` and re-execute"
    )


@pytest.mark.parametrize("source", EXECUTED, ids=lambda p: p.stem)
def test_notebook_takes_the_pipeline_parameters(source):
    parameters = papermill.inspect_notebook(str(source.with_suffix(".ipynb")))
    assert set(COMMON_PARAMETERS) <= set(parameters)


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_jupytext_version_kept_out_of_metadata(source):
    assert "jupytext_version:" not in source.read_text(), "jupytext version in the header churns between machines"


def test_the_pipeline_runs_every_paired_notebook_in_order():
    assert [p.stem for p in course_notebooks()] == [p.stem for p in NOTEBOOKS]
    assert [p.stem for p in notebook_sequence()] == [p.stem for p in EXECUTED]
    assert [p.name[:2] for p in EXECUTED] == [f"{i:02d}" for i in range(1, len(EXECUTED) + 1)]


def test_the_glossary_is_read_not_run():
    notebook = nbformat.read(GLOSSARY, as_version=4)
    assert {cell.cell_type for cell in notebook.cells} == {"markdown"}
    text = "\n".join(cell.source for cell in notebook.cells)
    for heading in GLOSSARY_HEADINGS:
        assert re.search(f"^{re.escape(heading)}$", text, re.M), f"00_notation lost '{heading}'"


def anchors(notebook) -> set[str]:
    """The fragments a link into ``notebook`` may use: explicit ``<a id=...>`` anchors, and
    headings as JupyterLab and nbconvert name them (spaces become '-')."""
    text = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    return (set(re.findall(r'<a id="([^"]+)"', text))
            | {h.strip().replace(" ", "-") for h in re.findall(r"^#+ (.+)$", text, re.M)})


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_links_into_the_glossary_resolve(source):
    text = source.read_text()
    known = anchors(nbformat.read(GLOSSARY, as_version=4))
    for fragment in re.findall(r"00_notation\.ipynb#([^)\s]+)", text):
        assert fragment in known, f"{source.name} links to 00_notation.ipynb#{fragment}, which is no anchor"


@pytest.mark.parametrize("source", EXECUTED, ids=lambda p: p.stem)
def test_every_notebook_links_the_glossary(source):
    header = jupytext.read(source).cells[0]
    assert header.cell_type == "markdown" and "(00_notation.ipynb" in header.source, (
        f"{source.name}'s first cell should say 'Notation and background: "
        f"[00 · Notation and primer](00_notation.ipynb)'")


def committed_reports() -> list[Path]:
    """The executed notebooks committed as reports/<dataset>/<run>/NN_*.ipynb (all on disk
    when this is not a git checkout)."""
    try:
        listed = subprocess.run(["git", "ls-files", "reports"], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout.split()
        paths = [ROOT / p for p in listed]
    except (OSError, subprocess.CalledProcessError):
        paths = list(ROOT.glob("reports/*/*/*.ipynb"))
    return sorted(p for p in paths if len(p.relative_to(ROOT).parts) == 4
                  and re.fullmatch(r"\d\d_.+\.ipynb", p.name))


@pytest.mark.parametrize("report", committed_reports(),
                         ids=lambda p: str(p.relative_to(ROOT / "reports").with_suffix("")))
def test_committed_reports_were_run_from_the_current_notebooks(report):
    source = ROOT / "notebooks" / report.name
    assert source.exists(), f"{report} has no notebook {source.name} any more: re-run or remove it"
    ran = [(c.cell_type, c.source) for c in executed_cells(nbformat.read(report, as_version=4))]
    now = [(c.cell_type, c.source) for c in nbformat.read(source, as_version=4).cells]
    assert ran == now, (f"{report.relative_to(ROOT)} was executed from another version of "
                        f"notebooks/{source.name}: re-run the pipeline for that run")
