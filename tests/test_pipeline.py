"""The papermill runner fails fast on bad input and runs a notebook end to end."""
import json

import nbformat
import pytest
import torch

from fatsmb_lib import pipeline
from fatsmb_lib.readers import DataError


@pytest.fixture
def no_execution(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a notebook was executed although the input was invalid")
    monkeypatch.setattr(pipeline, "run_notebook", refuse)


def test_unknown_dataset_fails_before_running(no_execution, tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'movielens'"):
        pipeline.run_pipeline("movielens", reports_dir=tmp_path)


def test_missing_data_file_says_where_to_put_it(no_execution, tmp_path):
    with pytest.raises(DataError, match="yelp.txt"):
        pipeline.run_pipeline("yelp", data_dir=str(tmp_path), reports_dir=tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu_fails_before_running(no_execution, tmp_path):
    with pytest.raises(RuntimeError, match="device='cuda' was requested"):
        pipeline.run_pipeline("synthetic-tiny", profile="smoke", device="cuda", reports_dir=tmp_path)


def test_unknown_profile(no_execution, tmp_path):
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        pipeline.run_pipeline("synthetic-tiny", profile="fast", reports_dir=tmp_path)


def test_unknown_parameter_is_rejected():
    notebook = pipeline.notebook_sequence()[0]
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['epochz'\]"):
        pipeline.check_parameters(notebook, {"dataset": "ml100k", "epochz": 3})


def test_sync_outputs_copies_outputs_and_refuses_other_sources(tmp_path):
    source = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    ran = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("1 + 1", execution_count=2,
                                  outputs=[nbformat.v4.new_output("execute_result", {"text/plain": "2"},
                                                                   execution_count=2)]),
    ])
    nbformat.write(source, tmp_path / "src.ipynb")
    nbformat.write(ran, tmp_path / "ran.ipynb")
    pipeline.sync_outputs(tmp_path / "ran.ipynb", tmp_path / "src.ipynb")
    synced = nbformat.read(tmp_path / "src.ipynb", as_version=4)
    assert synced.cells[0].outputs[0]["data"]["text/plain"] == "2"

    ran.cells[1].source = "1 + 2"
    nbformat.write(ran, tmp_path / "ran.ipynb")
    with pytest.raises(ValueError, match="not executed from the current"):
        pipeline.sync_outputs(tmp_path / "ran.ipynb", tmp_path / "src.ipynb")


def test_smoke_run_of_every_notebook(tmp_path):
    """The whole sequence on tiny synthetic data: every notebook executes, exports HTML, and the
    headline files are written and published one folder up."""
    summary = pipeline.run_pipeline("synthetic-tiny", profile="smoke", reports_dir=tmp_path,
                                    log=lambda line: None)
    run_dir = tmp_path / "synthetic-tiny" / "smoke"
    for notebook in pipeline.notebook_sequence():
        assert (run_dir / notebook.name).exists() and (run_dir / notebook.with_suffix(".html").name).exists()
    assert set(summary["seconds"]) == {nb.stem for nb in pipeline.notebook_sequence()}
    for name in ("item_long_tail.png", "attention_ape_vs_barope.png", "latent_tsne.png", "comparison.png"):
        assert (run_dir / name).exists(), name
    published = tmp_path / "synthetic-tiny"
    entropy = json.loads((published / "entropy.json").read_text())
    assert entropy["H(I|B)"] > entropy["H(B|I)"] > 0
    metrics = json.loads((published / "metrics.json").read_text())
    assert {"Pop", "SASRec", "BERT4Rec", "MBAE", "FatsMB"} <= set(metrics["models"])
    assert set(metrics["models"]["FatsMB"]["per_behavior"]) <= {"pv", "fav", "cart", "buy"}
    assert (published / "results.md").read_text().startswith("# synthetic-tiny")
