"""The papermill runner fails fast on bad input and runs a notebook end to end."""
import json
import subprocess
import sys

import nbformat
import pytest
import torch

from fatsmb_lib.course import pipeline
from fatsmb_lib.course.student import solution_cells
from fatsmb_lib.data.readers import DataError

EXERCISES_PER_NOTEBOOK = 3


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


def test_misspelled_device_fails_before_running(no_execution, tmp_path):
    with pytest.raises(RuntimeError, match="device='cdua' was requested but torch knows no such device"):
        pipeline.run_pipeline("synthetic-tiny", profile="smoke", device="cdua", reports_dir=tmp_path)


def test_only_matching_no_notebook_is_a_clear_error(no_execution, tmp_path, capsys):
    with pytest.raises(ValueError) as err:
        pipeline.run_pipeline("synthetic-tiny", profile="smoke", only=["99"], reports_dir=tmp_path)
    names = ", ".join(nb.stem for nb in pipeline.notebook_sequence())
    assert str(err.value) == (f"--only 99: no notebook name starts with '99'; the notebooks are "
                              f"{names}")
    with pytest.raises(SystemExit) as exit_:
        pipeline.main(["--dataset", "synthetic-tiny", "--only", "99", "--reports-dir", str(tmp_path)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"python -m fatsmb_lib.course.pipeline: error: {err.value}\n"


def tiny_notebook(path, body):
    """A notebook with the pipeline's parameters cell and one code cell."""
    parameters = nbformat.v4.new_code_cell(
        'dataset = "ml100k"\nprofile = "default"\ndevice = "auto"\nrun_dir = ""\n'
        'data_dir = ""\nseed = 0', metadata={"tags": ["parameters"]})
    notebook = nbformat.v4.new_notebook(cells=[parameters, nbformat.v4.new_code_cell(body)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


def test_a_failed_notebook_is_recorded_and_the_command_exits_non_zero(tmp_path, capsys, monkeypatch):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    tiny_notebook(notebooks / "01_ok.ipynb", "from pathlib import Path\n"
                  "Path(run_dir, 'ok.txt').write_text(dataset)")
    failing = tiny_notebook(notebooks / "02_fails.ipynb",
                            "assert 1 + 1 == 3, 'the arithmetic broke'")
    tiny_notebook(notebooks / "03_never.ipynb", "raise SystemExit('must not run')")
    reports = tmp_path / "reports"
    with pytest.raises(pipeline.NotebookFailedError) as err:
        pipeline.run_pipeline("synthetic-tiny", profile="smoke", device="cpu", reports_dir=reports,
                              notebooks_dir=notebooks, log=lambda line: None)
    run_dir = reports / "synthetic-tiny" / "smoke"
    summary = json.loads((run_dir / "run_summary.json").read_text())
    assert summary == err.value.summary
    assert summary["status"] == "failed" and list(summary["seconds"]) == ["01_ok"]
    assert summary["failed"] == {
        "notebook": "02_fails", "error": "AssertionError: the arithmetic broke", "where": "cell [3]",
        "partial_output": str(run_dir / "02_fails.ipynb")}
    partial = nbformat.read(run_dir / "02_fails.ipynb", as_version=4)
    assert any(o.get("ename") == "AssertionError" for c in partial.cells for o in c.get("outputs", []))
    assert (run_dir / "02_fails.html").exists() and not (run_dir / "03_never.ipynb").exists()
    assert str(err.value).startswith("02_fails.ipynb failed in cell [3]: AssertionError: the "
                                     "arithmetic broke\nPartial outputs: ")
    assert "re-run the same command: finished checkpoints are reloaded" in str(err.value)

    # the command line: exit status 1, the same message; then fixed and re-run: finished
    args = ["--dataset", "synthetic-tiny", "--profile", "smoke", "--device", "cpu",
            "--reports-dir", str(reports), "--only", "02"]
    original = pipeline.notebook_sequence
    monkeypatch.setattr(pipeline, "notebook_sequence",
                        lambda root=None, notebooks_dir=None: original(root, notebooks))
    with pytest.raises(SystemExit) as exit_:
        pipeline.main(args)
    assert exit_.value.code == 1
    assert "02_fails.ipynb failed in cell [3]" in capsys.readouterr().err
    tiny_notebook(failing, "1 + 1")
    pipeline.main(args)
    assert json.loads((run_dir / "run_summary.json").read_text())["status"] == "finished"


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
    headline files are written and published one folder up; every exercise solution (a code
    cell tagged ``solution``) ran without error and showed its answer, three per notebook."""
    summary = pipeline.run_pipeline("synthetic-tiny", profile="smoke", reports_dir=tmp_path,
                                    log=lambda line: None)
    run_dir = tmp_path / "synthetic-tiny" / "smoke"
    for notebook in pipeline.notebook_sequence():
        assert (run_dir / notebook.name).exists() and (run_dir / notebook.with_suffix(".html").name).exists()
    assert set(summary["seconds"]) == {nb.stem for nb in pipeline.notebook_sequence()}
    trained = summary["training"]   # every fit checkpoint, with its epochs and time
    assert {name.split("-")[0] for name in trained} >= {"mbae", "bert4rec", "sasrec", "denoiser", "decoder"}
    assert all(t["epochs"] >= 1 and t["seconds"] > 0 for t in trained.values())
    assert sum(t["seconds"] for t in trained.values()) < sum(summary["seconds"].values())
    for name in ("item_long_tail.png", "attention_ape_vs_barope.png", "latent_tsne.png", "comparison.png"):
        assert (run_dir / name).exists(), name
    published = tmp_path / "synthetic-tiny"
    entropy = json.loads((published / "entropy.json").read_text())
    assert entropy["H(I|B)"] > entropy["H(B|I)"] > 0
    metrics = json.loads((published / "metrics.json").read_text())
    assert {"Pop", "SASRec", "BERT4Rec", "MBAE", "FatsMB"} <= set(metrics["models"])
    assert set(metrics["models"]["FatsMB"]["per_behavior"]) <= {"pv", "fav", "cart", "buy"}
    assert (published / "results.md").read_text().startswith("# synthetic-tiny")
    # data/README.md's recommend snippet, pointed at the run folder, reloads the pipeline's
    # three stages: nothing is retrained, nothing new is written
    from fatsmb_lib.training.run import open_run
    from fatsmb_lib.training.stages import (
        finetune_decoder,
        prefix_latents,
        train_denoiser,
        train_mbae,
    )

    before = sorted(run_dir.glob("*.pt"))
    ctx = open_run("synthetic-tiny", "smoke", "cpu", run_dir=run_dir)
    lines = []
    ctx.model_lines = False
    ctx.log = lines.append
    mbae, _ = train_mbae(ctx)
    latents = prefix_latents(mbae, ctx)
    fatsmb, _ = train_denoiser(mbae, ctx, latents=latents)
    finetune_decoder(fatsmb, ctx, latents=latents)
    assert len(lines) == 3 and all(line.endswith("not retraining") for line in lines), lines
    assert sorted(run_dir.glob("*.pt")) == before
    top = ctx.recommend(fatsmb, user=ctx.data.user_keys[0], behavior="buy", k=10)
    assert len(top) == 10

    solutions = {}
    for notebook in pipeline.notebook_sequence():
        executed = nbformat.read(run_dir / notebook.name, as_version=4)
        code = [cell for cell in solution_cells(executed) if cell.cell_type == "code"]
        for cell in code:
            where = f"{notebook.stem}, solution cell starting {cell.source[:60]!r}"
            assert cell.execution_count is not None, f"{where} did not run"
            assert not [o for o in cell.outputs if o.output_type == "error"], f"{where} failed"
            shown = [o for o in cell.outputs
                     if o.output_type in ("execute_result", "display_data")
                     or (o.output_type == "stream" and o.name == "stdout" and o.text.strip())]
            assert shown, f"{where} showed no answer (only warnings or nothing)"
        solutions[notebook.stem] = len(code)
    assert solutions == {nb.stem: EXERCISES_PER_NOTEBOOK for nb in pipeline.notebook_sequence()}, (
        "each notebook keeps 3 exercises, each with one code cell tagged `solution`")


def test_only_keeps_the_timings_of_the_other_notebooks(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "run_notebook", lambda notebook, out_dir, parameters: 5.0)
    monkeypatch.setattr(pipeline, "peak_rss_mib", lambda children: 900.0)
    first = pipeline.run_pipeline("synthetic-tiny", "smoke", "cpu", data_dir=str(tmp_path / "data"),
                                  reports_dir=tmp_path, log=lambda line: None)
    n = len(pipeline.notebook_sequence())
    assert len(first["seconds"]) == n
    monkeypatch.setattr(pipeline, "run_notebook", lambda notebook, out_dir, parameters: 1.0)
    monkeypatch.setattr(pipeline, "peak_rss_mib", lambda children: 500.0)
    again = pipeline.run_pipeline("synthetic-tiny", "smoke", "cpu", data_dir=str(tmp_path / "data"),
                                  only=["04"], reports_dir=tmp_path, log=lambda line: None)
    assert again["seconds"]["01_entropy_analysis"] == 5.0
    assert again["seconds"]["04_finetune_evaluate"] == 1.0
    assert again["total_seconds"] == 5.0 * (n - 1) + 1.0
    assert again["peak_rss_mib"] == 900     # the earlier notebooks' peak is kept


# ----------------------------------------------------------------------------- what the console shows

TOY_TRAINING = """\
import warnings
from fatsmb_lib.support.progress import ModelLine, capture_warnings
from fatsmb_lib.training.train import History
capture_warnings()                 # open_run does this in the course notebooks
history, line = History(), ModelLine("toy-model", 3)
for epoch in (1, 2):
    history.record(epoch, 1.0 / epoch, {"NDCG@10": 0.1 * epoch}, 1.5)
    history.best_value, history.best_epoch = 0.1 * epoch, epoch
    line.update("epoch", history)
history.stopped_early = True
line.finish(history)
warnings.warn("3 users dropped by min_uc", UserWarning)
print("done")"""


def test_the_console_streams_model_lines_and_warnings_and_the_summary_lists_them(
        tmp_path, capfd):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    tiny_notebook(notebooks / "01_toy.ipynb", TOY_TRAINING)
    tiny_notebook(notebooks / "02_again.ipynb",        # the same warning: printed and listed once
                  "import warnings\nfrom fatsmb_lib.support.progress import capture_warnings\n"
                  "capture_warnings()\nwarnings.warn('3 users dropped by min_uc', UserWarning)")
    lines = []
    summary = pipeline.run_pipeline("synthetic-tiny", profile="smoke", device="cpu",
                                    reports_dir=tmp_path / "reports", notebooks_dir=notebooks,
                                    log=lines.append)
    final = "toy-model  2/3 epochs (stopped early)  loss 0.5000  best valid NDCG@10 0.2000 (epoch 2)  3 s"
    warning = "UserWarning: 3 users dropped by min_uc"
    assert lines[:6] == ["[pipeline] 01_toy.ipynb ...", f"[01_toy] {final}",
                         f"[01_toy] warning: {warning}", lines[3], "[pipeline] 02_again.ipynb ...",
                         lines[5]]
    assert lines[3].startswith("[pipeline] 01_toy.ipynb done in ")
    assert lines[5].startswith("[pipeline] 02_again.ipynb done in ")
    assert summary["warnings"] == [f"[01_toy, 02_again] {warning}"]
    run_dir = tmp_path / "reports" / "synthetic-tiny" / "smoke"
    assert json.loads((run_dir / "run_summary.json").read_text())["warnings"] == summary["warnings"]
    assert lines[-1].endswith(f"Warnings (1, also in run_summary.json):\n"
                              f"  [01_toy, 02_again] {warning}")
    # the saved notebook keeps the model's last line only, not every rewrite
    cell = nbformat.read(run_dir / "01_toy.ipynb", as_version=4).cells[-1]
    stdout = "".join(o["text"] for o in cell.outputs if o.get("name") == "stdout")
    assert stdout == f"{final}\ndone\n"
    # the kernel talks over IPC: no "running over TCP without encryption" on the console
    assert "without encryption" not in capfd.readouterr().err


def test_a_model_line_shows_epoch_loss_validation_and_time_in_place(tmp_path, capsys):
    from fatsmb_lib.training.run import open_run
    from fatsmb_lib.training.stages import train_mbae

    ctx = open_run("synthetic-tiny", "smoke", "cpu", tmp_path / "run", tmp_path, stage1_epochs=2)
    _, history = train_mbae(ctx)
    out = capsys.readouterr().out
    first, last = history.val_metrics[0]["NDCG@10"], history.best_value
    assert out.startswith("\rmbae-barope  starting\rmbae-barope  epoch 1/2  loss "
                          f"{history.train_loss[0]:.4f}  valid NDCG@10 {first:.4f}  ")
    assert out.endswith(f"mbae-barope  2/2 epochs  loss {history.train_loss[1]:.4f}  best valid "
                        f"NDCG@10 {last:.4f} (epoch {history.best_epoch})  "
                        f"{sum(history.seconds):.0f} s\n")
    assert out.count("\n") == 1                                  # one line per model
    train_mbae(ctx)                                                # finished: reloaded
    assert capsys.readouterr().out.endswith(
        f"mbae-barope  reloaded: 2/2 epochs, best valid NDCG@10 {last:.4f} (epoch "
        f"{history.best_epoch}), trained in {sum(history.seconds):.0f} s\n")


def test_a_run_name_must_be_one_folder_name(no_execution, tmp_path, capsys):
    reports = tmp_path / "a" / "b" / "reports"
    with pytest.raises(SystemExit) as exit_:
        pipeline.main(["--dataset", "synthetic-tiny", "--profile", "smoke", "--run", "../../x",
                       "--reports-dir", str(reports)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        "python -m fatsmb_lib.course.pipeline: error: --run '../../x': a run name must be a single "
        "folder name (letters, digits, '_', '-' and '.', starting with a letter or digit), e.g. "
        "--run trial2; the run is written to reports/<dataset>/<name>/. To write elsewhere, pass "
        "--reports-dir\n")
    assert not (tmp_path / "a").exists()
    for name in ("/tmp/x", "a/b", "..", ".hidden", ""):
        with pytest.raises(ValueError, match="a run name must be a single folder name"):
            pipeline.run_pipeline("synthetic-tiny", profile="smoke", run=name, reports_dir=reports)


def test_two_runs_at_once_each_talk_to_their_own_kernel(tmp_path):
    """Two notebooks executed at the same time from one folder by two processes (two
    pipelines: two datasets or profiles) each get their own kernel. jupyter_client's default
    puts the IPC sockets in the working directory (``notebooks/kernel-ipc-N``, N picked as the
    first free number), where two kernels starting together took the same N and connected to
    each other ("Invalid Signature"); so each kernel's sockets must live in a folder of its own,
    which the notebook itself checks while it runs. (Processes, as in real use: papermill's
    working-directory switch is process-wide, so threads would race on it.)"""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    runs = []
    for i in (1, 2):
        source = tiny_notebook(notebooks / f"0{i}_who.ipynb",
                               f"import glob, time; time.sleep(2); print('run {i}', dataset, glob.glob('kernel-ipc*'))")
        out_dir = tmp_path / f"out{i}"
        out_dir.mkdir()
        code = ("import sys; from pathlib import Path; from fatsmb_lib.course.pipeline import run_notebook; "
                "run_notebook(Path(sys.argv[1]), Path(sys.argv[2]), dict(dataset=sys.argv[3], "
                "profile='smoke', device='cpu', run_dir=sys.argv[2], data_dir='', seed=0))")
        runs.append((source, out_dir, subprocess.Popen(
            [sys.executable, "-c", code, str(source), str(out_dir), f"d{i}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    printed = {}
    for i, (source, out_dir, process) in zip((1, 2), runs):
        log, _ = process.communicate(timeout=240)
        assert process.returncode == 0, log
        cell = nbformat.read(out_dir / source.name, as_version=4).cells[-1]
        printed[i] = "".join(o.get("text", "") for o in cell.outputs)
    assert printed == {1: "run 1 d1 []\n", 2: "run 2 d2 []\n"}
