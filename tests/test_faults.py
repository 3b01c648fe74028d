"""Fault injection: what happens to a run when the machine, the disk or the numbers fail.

Every case runs on synthetic-tiny with the smoke profile cut to a few epochs (seconds each):

- SIGKILL in the middle of each of the three stages, then the same call again: the weights
  are identical to an uninterrupted run's;
- a zero-byte, truncated or garbage checkpoint: moved aside, retrained, said so;
- NaN in the loss, NaN in the weights (lr=1e3 with eval_every=2): an error naming the last
  good checkpoint, whose advice leads to a call that works;
- a full disk during checkpoint and cache writes: nothing half-written, the previous file intact;
- two pipeline runs on one folder: the second is refused, and a killed first one frees it.
"""
import errno
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fatsmb_lib.course import pipeline
from fatsmb_lib.data.preprocess import load_dataset
from fatsmb_lib.models.encoder import MBAE
from fatsmb_lib.support import checkpoints
from fatsmb_lib.training.run import open_run
from fatsmb_lib.training.stages import finetune_decoder, prefix_latents, train_denoiser, train_mbae
from fatsmb_lib.training.train import CheckpointWarning, NonFiniteLossError, NonFiniteWeightsError

EPOCHS = dict(stage1_epochs=3, stage2_epochs=3, stage3_epochs=3)
STAGE_FILES = {1: "mbae-*.pt", 2: "denoiser-*.pt", 3: "decoder-*.pt"}
WAIT_S = 120  # the slowest a child may take to reach its pause (2 shared cores)


def open_tiny(run_dir, data_dir, **overrides):
    return open_run("synthetic-tiny", "smoke", "cpu", run_dir, data_dir, **{**EPOCHS, **overrides})


def run_stages(ctx, last_stage):
    """Stages 1..last_stage; returns the model trained last and its history."""
    mbae, history = train_mbae(ctx)
    if last_stage == 1:
        return mbae, history
    latents = prefix_latents(mbae, ctx)
    fatsmb, history = train_denoiser(mbae, ctx, latents=latents)
    if last_stage == 2:
        return fatsmb.denoiser, history
    return fatsmb, finetune_decoder(fatsmb, ctx, latents=latents)


def state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    load_dataset("synthetic-tiny", folder)       # the cache every process then reads
    return folder


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory):
    """The three stages, uninterrupted: run folder, and each stage's weights and history."""
    run_dir = tmp_path_factory.mktemp("reference")
    ctx = open_tiny(run_dir, data_dir)
    return run_dir, {s: (state(m), h) for s in (1, 2, 3) for m, h in [run_stages(ctx, s)]}


# ----------------------------------------------------------------------------- SIGKILL


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    from fatsmb_lib.training import train
    from fatsmb_lib.training.run import open_run
    from fatsmb_lib.training.stages import finetune_decoder, prefix_latents, train_denoiser, train_mbae

    stage, run_dir, data_dir, marker = int(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4])
    active = [False]
    original = train.train_one_epoch

    def pausing(model, batches, *args, epoch, **kwargs):
        # in the target stage's epoch 2, after its first optimizer step: tell the parent, wait
        def paused():
            for i, batch in enumerate(batches):
                if active[0] and epoch == 2 and i == 1:
                    marker.write_text("in epoch 2")
                    time.sleep(600)
                yield batch
        return original(model, paused(), *args, epoch=epoch, **kwargs)

    train.train_one_epoch = pausing
    ctx = open_run("synthetic-tiny", "smoke", "cpu", run_dir, data_dir,
                   stage1_epochs=3, stage2_epochs=3, stage3_epochs=3)
    active[0] = stage == 1
    mbae, _ = train_mbae(ctx)
    latents = prefix_latents(mbae, ctx)
    active[0] = stage == 2
    fatsmb, _ = train_denoiser(mbae, ctx, latents=latents)
    active[0] = stage == 3
    finetune_decoder(fatsmb, ctx, latents=latents)
    sys.exit("finished without pausing")
""")


def kill_mid_stage(stage, run_dir, data_dir, tmp_path):
    """Run the stages in a child process, SIGKILL it in the middle of ``stage``'s epoch 2."""
    marker = tmp_path / f"paused-{stage}"
    log = open(tmp_path / f"child-{stage}.log", "w")
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(stage), str(run_dir),
                              str(data_dir), str(marker)], stdout=log, stderr=log, cwd=tmp_path)
    deadline = time.monotonic() + WAIT_S
    while not marker.exists():
        assert child.poll() is None, (tmp_path / f"child-{stage}.log").read_text()
        assert time.monotonic() < deadline, "the child never reached epoch 2"
        time.sleep(0.1)
    child.send_signal(signal.SIGKILL)
    child.wait()
    log.close()
    assert child.returncode == -signal.SIGKILL


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_sigkill_during_a_stage_then_rerun_gives_identical_weights(stage, reference, data_dir,
                                                                   tmp_path):
    ref_dir, ref = reference
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for earlier in range(1, stage):              # the finished stages before this one
        for path in ref_dir.glob(STAGE_FILES[earlier]):
            shutil.copy2(path, run_dir / path.name)
    kill_mid_stage(stage, run_dir, data_dir, tmp_path)
    (killed,) = run_dir.glob(STAGE_FILES[stage])
    ck = torch.load(killed, weights_only=True)
    assert ck["epoch"] == 1 and not ck["finished"]     # killed after epoch 1's checkpoint
    assert not list(run_dir.glob(".*.tmp"))

    model, history = run_stages(open_tiny(run_dir, data_dir), stage)
    ref_state, ref_history = ref[stage]
    assert same_state(state(model), ref_state)
    assert history.epochs == ref_history.epochs == [1, 2, 3]
    assert history.train_loss == ref_history.train_loss


# ----------------------------------------------------------------------------- corrupt checkpoints


@pytest.mark.parametrize("damage", ["zero-byte", "truncated", "garbage"])
def test_a_corrupt_checkpoint_is_moved_aside_and_retrained(damage, reference, data_dir, tmp_path):
    ref_dir, ref = reference
    (finished,) = ref_dir.glob(STAGE_FILES[1])
    path = tmp_path / finished.name
    content = finished.read_bytes()
    path.write_bytes({"zero-byte": b"", "truncated": content[: len(content) // 3],
                      "garbage": os.urandom(4096)}[damage])
    damaged = path.read_bytes()
    with pytest.warns(CheckpointWarning) as record:
        mbae, history = train_mbae(open_tiny(tmp_path, data_dir))
    (warning,) = [str(w.message) for w in record]
    print(warning)
    assert warning.startswith(f"checkpoint {path} is unreadable (")
    assert re.search(rf"\): moved it to {re.escape(path.name)}\.corrupt-\d{{8}}-\d{{6}} and "
                     r"training from scratch$", warning)
    assert "weights_only=False" not in warning
    (aside,) = tmp_path.glob(f"{path.name}.corrupt-*")
    assert aside.read_bytes() == damaged                       # kept as evidence
    assert history.epochs == [1, 2, 3] and same_state(state(mbae), ref[1][0])
    assert torch.load(path, weights_only=True)["finished"]


# ----------------------------------------------------------------------------- NaN


def test_nan_in_the_loss_keeps_the_last_good_checkpoint_and_resumes_from_it(
        reference, data_dir, tmp_path, monkeypatch):
    real_loss, calls = MBAE.loss, {"n": 0}
    steps_per_epoch = 3                                          # 3 Cloze batches on tiny data

    def nan_in_epoch_2(self, batch):
        calls["n"] += 1
        loss = real_loss(self, batch)
        return loss * float("nan") if calls["n"] == steps_per_epoch + 2 else loss

    monkeypatch.setattr(MBAE, "loss", nan_in_epoch_2)
    ctx = open_tiny(tmp_path, data_dir)
    with pytest.raises(NonFiniteLossError) as err:
        train_mbae(ctx)
    msg = str(err.value)
    print(msg)
    (path,) = tmp_path.glob(STAGE_FILES[1])
    assert msg.startswith(f"loss is nan at epoch 2, step 2; the last good checkpoint, {path} "
                          f"(end of epoch 1), is kept untouched. Lower the learning rate")
    monkeypatch.undo()                                           # the cause is gone: re-run
    mbae, history = train_mbae(ctx)
    assert history.epochs == [1, 2, 3] and same_state(state(mbae), reference[1][1][0])


def test_nan_weights_with_a_finite_loss_are_never_saved_and_the_advice_works(data_dir, tmp_path):
    """lr=1e3: the loss of epoch 1 stays finite (~1e8) while the weights become NaN; with
    eval_every=2 nothing validates epoch 1, so only the weight check stands between the NaN
    and a checkpoint that would later be called 'the last good one'."""
    ctx = open_tiny(tmp_path, data_dir, lr=1e3, eval_every=2)
    with pytest.raises(NonFiniteWeightsError) as err:
        train_mbae(ctx)
    msg = str(err.value)
    print(msg)
    assert msg.startswith("weights became non-finite during epoch 1 (model.")
    assert "although the loss stayed finite; nothing of this epoch was saved; there is no good " \
           "checkpoint: nothing was written to" in msg
    assert not list(tmp_path.glob("*.pt"))
    # follow the advice to the letter
    suggested = float(re.search(r"ctx = ctx\.replace\(lr=([0-9.e-]+)\)", msg).group(1))
    assert suggested <= 2e-3
    mbae, history = train_mbae(ctx.replace(lr=suggested))
    assert history.epochs == [1, 2, 3] and np.isfinite(history.train_loss).all()
    assert all(torch.isfinite(v).all() for v in mbae.state_dict().values() if v.is_floating_point())


# ----------------------------------------------------------------------------- a full disk


class FillsUp(io.FileIO):
    """A file that accepts ``budget`` bytes, then fails like a full disk."""

    budget = 512

    def write(self, data):
        room = self.budget - self.tell()
        if len(data) > room:
            super().write(bytes(data)[: max(room, 0)])
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


def full_disk_from_write(monkeypatch, n):
    """Every atomic write from the n-th on runs out of space half-way."""
    real_fdopen, calls = os.fdopen, {"n": 0}

    def fdopen(fd, mode="r", *args, **kwargs):
        calls["n"] += 1
        return FillsUp(fd, "wb") if calls["n"] >= n else real_fdopen(fd, mode, *args, **kwargs)

    monkeypatch.setattr(checkpoints.os, "fdopen", fdopen)


def test_a_full_disk_during_a_checkpoint_write_leaves_the_previous_checkpoint(
        reference, data_dir, tmp_path, monkeypatch):
    full_disk_from_write(monkeypatch, 2)                 # epoch 1 is written, epoch 2 is not
    ctx = open_tiny(tmp_path, data_dir)
    with pytest.raises(OSError) as err:
        train_mbae(ctx)
    print(err.value)
    (path,) = tmp_path.glob(STAGE_FILES[1])
    assert err.value.errno == errno.ENOSPC
    assert str(err.value) == (
        f"[Errno 28] could not write checkpoint {path} (No space left on device); the last good "
        f"checkpoint, {path} (end of epoch 1), is kept untouched. Free some disk space (or pass "
        f"another run folder) and re-run the same call to resume.")
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]   # no half-written temp
    assert torch.load(path, weights_only=True)["epoch"] == 1
    monkeypatch.undo()                                   # space again: resume
    mbae, history = train_mbae(ctx)
    assert same_state(state(mbae), reference[1][1][0]) and history.epochs == [1, 2, 3]


def test_a_full_disk_during_a_cache_write_leaves_the_previous_cache(tmp_path, monkeypatch):
    good = load_dataset("synthetic-tiny", tmp_path)
    (cache,) = (tmp_path / ".cache").glob("*.npz")
    with np.load(cache) as z:                          # edited by hand: it will be rebuilt
        arrays = {name: z[name] for name in z.files}
    arrays["seq_behaviors"] = np.ones_like(arrays["seq_behaviors"])
    np.savez(cache, **arrays)
    previous = cache.read_bytes()
    full_disk_from_write(monkeypatch, 1)
    with pytest.warns(UserWarning) as record:
        data = load_dataset("synthetic-tiny", tmp_path)
    messages = [str(w.message) for w in record]
    print("\n".join(messages))
    assert any("do not match the checksum" in m for m in messages)
    assert any(m.startswith(f"could not write the cache {cache}") and "No space left" in m
               for m in messages)
    assert data.fingerprint == good.fingerprint                  # the data are still right
    assert cache.read_bytes() == previous                        # the previous file, intact
    assert [p.name for p in cache.parent.iterdir()] == [cache.name]


# ----------------------------------------------------------------------------- two runs, one folder


HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from fatsmb_lib.course import pipeline
    pipeline.run_notebook = lambda notebook, out_dir, parameters: time.sleep(600)
    pipeline.run_pipeline("synthetic-tiny", profile="smoke", device="cpu",
                          reports_dir=Path(sys.argv[1]), data_dir=sys.argv[2])
""")


def test_two_pipeline_runs_on_one_folder_the_second_is_refused(data_dir, tmp_path, capsys,
                                                               monkeypatch):
    reports = tmp_path / "reports"
    lock = reports / "synthetic-tiny" / "smoke" / ".lock"
    first = subprocess.Popen([sys.executable, "-c", HOLDER, str(reports), str(data_dir)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    deadline = time.monotonic() + WAIT_S
    while not (lock.exists() and f'"pid": {first.pid}' in lock.read_text()):
        assert first.poll() is None, first.stderr.read().decode()
        assert time.monotonic() < deadline, "the first run never took the lock"
        time.sleep(0.1)

    def must_not_run(*args, **kwargs):
        raise AssertionError("the second run executed a notebook")
    monkeypatch.setattr(pipeline, "run_notebook", must_not_run)
    args = ["--dataset", "synthetic-tiny", "--profile", "smoke", "--device", "cpu",
            "--data-dir", str(data_dir), "--reports-dir", str(reports)]
    with pytest.raises(SystemExit) as exit_:
        pipeline.main(args)
    err = capsys.readouterr().err
    print(err)
    assert exit_.value.code == 2
    assert re.fullmatch(
        rf"python -m fatsmb_lib\.course\.pipeline: error: another run \(pid {first.pid}, started "
        rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\) is writing {re.escape(str(lock.parent))}; wait for "
        rf"it to finish, or pass --run NAME to write reports/synthetic-tiny/NAME instead\n", err)

    first.send_signal(signal.SIGKILL)                    # a crash: the kernel drops the lock
    first.wait()
    monkeypatch.setattr(pipeline, "run_notebook", lambda notebook, out_dir, parameters: 0.0)
    pipeline.main(args)
    summary = json.loads((lock.parent / "run_summary.json").read_text())
    assert summary["status"] == "finished"


# ----------------------------------------------------------------------------- the end of a run


@pytest.mark.parametrize("damage", ["zero-byte", "truncated"])
def test_a_stray_corrupt_checkpoint_does_not_crash_the_end_of_a_good_run(damage, reference,
                                                                          data_dir, tmp_path,
                                                                          monkeypatch):
    """A checkpoint no selected notebook loads (a stray file, a truncated denoiser with
    --only 01) used to end a finished run with torch's raw EOFError / PytorchStreamReader
    traceback, leaving the previous run's "finished" summary in place."""
    ref_dir, _ = reference
    run_dir = tmp_path / "reports" / "synthetic-tiny" / "smoke"
    run_dir.mkdir(parents=True)
    (good,) = ref_dir.glob(STAGE_FILES[1])
    shutil.copy2(good, run_dir / good.name)
    (denoiser,) = ref_dir.glob(STAGE_FILES[2])
    content = denoiser.read_bytes()
    bad = run_dir / denoiser.name
    bad.write_bytes(b"" if damage == "zero-byte" else content[: len(content) // 3])
    (run_dir / "run_summary.json").write_text('{"status": "finished"}')
    monkeypatch.setattr(pipeline, "run_notebook", lambda notebook, out_dir, parameters: 1.0)
    summary = pipeline.run_pipeline("synthetic-tiny", "smoke", "cpu", data_dir=str(data_dir),
                                    only=["01"], reports_dir=tmp_path / "reports",
                                    log=lambda line: None)
    assert summary["status"] == "finished"
    assert list(summary["training"]) == [good.stem]                  # the good one is timed
    (warning,) = summary["warnings"]
    print(warning)
    reason = "zero bytes" if damage == "zero-byte" else "PytorchStreamReader failed"
    assert warning.startswith(f"checkpoint {bad} is unreadable ({reason}")
    assert warning.endswith("): left out of the training times (no notebook of this run loaded "
                            "it; delete or move it)")
    assert json.loads((run_dir / "run_summary.json").read_text()) == summary


def test_checkpoints_are_read_through_one_function():
    """Every torch.load of the library is checkpoints.read_checkpoint's (weights only, errors
    that name the file)."""
    import fatsmb_lib

    package = Path(fatsmb_lib.__file__).parent
    loads = {path.name for path in package.rglob("*.py") if "torch.load(" in path.read_text()}
    assert loads == {"checkpoints.py"}


SLEEPER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from fatsmb_lib.course import pipeline
    notebooks = Path(sys.argv[1])
    pipeline.notebook_sequence = lambda root=None, notebooks_dir=None: sorted(notebooks.glob("*.ipynb"))
    pipeline.main(["--dataset", "synthetic-tiny", "--profile", "smoke", "--device", "cpu",
                   "--data-dir", sys.argv[2], "--reports-dir", sys.argv[3]])
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_ctrl_c_writes_an_interrupted_summary_and_stops_the_kernel(sig, data_dir,
                                                                             tmp_path):
    from test_pipeline import tiny_notebook

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    marker = tmp_path / "kernel-pid"
    tiny_notebook(notebooks / "01_first.ipynb", "1 + 1")
    tiny_notebook(notebooks / "02_sleeps.ipynb",
                  f"import os, time\nfrom pathlib import Path\n"
                  f"Path({str(marker)!r}).write_text(str(os.getpid()))\ntime.sleep(600)")
    tiny_notebook(notebooks / "03_never.ipynb", "raise SystemExit('must not run')")
    reports = tmp_path / "reports"
    run_dir = reports / "synthetic-tiny" / "smoke"
    run_dir.mkdir(parents=True)
    (run_dir / "run_summary.json").write_text('{"status": "finished"}')     # a stale one
    child = subprocess.Popen([sys.executable, "-c", SLEEPER, str(notebooks), str(data_dir),
                              str(reports)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             cwd=tmp_path, text=True)
    deadline = time.monotonic() + WAIT_S
    while not marker.exists():
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the sleeping cell never started"
        time.sleep(0.1)
    assert json.loads((run_dir / "run_summary.json").read_text())["status"] == "running"
    kernel = int(marker.read_text())
    child.send_signal(sig)
    out, err = child.communicate(timeout=WAIT_S)
    print(out, err)
    assert child.returncode == 128 + sig
    name = signal.Signals(sig).name
    summary = json.loads((run_dir / "run_summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["signal"] == name
    assert summary["interrupted"] == {"notebook": "02_sleeps",
                                      "partial_output": str(run_dir / "02_sleeps.ipynb")}
    assert list(summary["seconds"]) == ["01_first"]
    assert err.endswith(
        f"python -m fatsmb_lib.course.pipeline: interrupted by {name} during 02_sleeps.ipynb; the "
        f"notebook's kernel was stopped. Summary: {run_dir / 'run_summary.json'}. Re-run the "
        f"same command to resume: finished checkpoints are reloaded, an interrupted one resumes "
        f"from its last epoch.\n")
    assert "Traceback" not in err and "without encryption" not in err
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(kernel, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the kernel (pid {kernel}) outlived the interrupted run")
    assert not (run_dir / "03_never.ipynb").exists()
