"""Every notebook source (.py, jupytext percent) and its committed .ipynb hold the same cells,
and every notebook defines the parameters the pipeline passes."""
from pathlib import Path

import jupytext
import papermill
import pytest

from fatsmb_lib.pipeline import COMMON_PARAMETERS

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.py"))


def _cells(notebook):
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_pair_agrees_by_content(source):
    paired = source.with_suffix(".ipynb")
    assert paired.exists(), f"{source.name} has no paired {paired.name}: run `jupytext --sync {source}`"
    assert _cells(jupytext.read(source)) == _cells(jupytext.read(paired)), (
        f"{source.name} and {paired.name} differ: run `jupytext --sync {source}` and re-execute"
    )


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_takes_the_pipeline_parameters(source):
    parameters = papermill.inspect_notebook(str(source.with_suffix(".ipynb")))
    assert set(COMMON_PARAMETERS) <= set(parameters)


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_jupytext_version_kept_out_of_metadata(source):
    assert "jupytext_version:" not in source.read_text(), "jupytext version in the header churns between machines"


def test_the_pipeline_runs_every_paired_notebook_in_order():
    from fatsmb_lib.pipeline import notebook_sequence

    assert [p.stem for p in notebook_sequence()] == [p.stem for p in NOTEBOOKS]
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(1, len(NOTEBOOKS) + 1)]
