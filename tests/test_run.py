"""open_run's validation order, expect() on trained results, and one writer per run folder."""
import os
import warnings

import pytest

from fatsmb_lib.training import run
from fatsmb_lib.training.run import (
    ExpectationWarning,
    RunLockedError,
    expect,
    lock_run_dir,
    open_run,
)


def test_open_run_checks_the_device_before_reading_any_data(tmp_path):
    with pytest.raises(RuntimeError, match="device='cdua' was requested but torch knows no such"):
        open_run("synthetic-tiny", "smoke", "cdua", tmp_path / "run", tmp_path / "data")
    assert not (tmp_path / "data").exists() and not (tmp_path / "run").exists()


def test_open_run_refuses_unknown_names_with_what_is_known(tmp_path):
    with pytest.raises(ValueError, match=r"unknown dataset 'shoop'.*dataset\.json"):
        open_run("shoop", "smoke", "cpu", tmp_path / "run", tmp_path)
    with pytest.raises(ValueError, match="unknown profile 'smok'"):
        open_run("synthetic-tiny", "smok", "cpu", tmp_path / "run", tmp_path)
    with pytest.raises(TypeError, match=r"Profile has no field\(s\) \['epochz'\]"):
        open_run("synthetic-tiny", "smoke", "cpu", tmp_path / "run", tmp_path, epochz=3)


EXPECTATION = ("the MBAE to beat popularity (test NDCG@10)",
               "on few users or few epochs the MBAE may be under-trained")


def test_expect_is_strict_on_ml100k(monkeypatch):
    monkeypatch.delenv(run.STRICT_ENV, raising=False)
    with pytest.raises(AssertionError) as err:
        expect(False, *EXPECTATION, dataset="ml100k")
    assert str(err.value) == (
        "expected the MBAE to beat popularity (test NDCG@10), but it does not hold on ml100k; "
        "it holds in the default run, so look for a regression or a changed setting (set "
        "FATSMB_STRICT=0 to only warn)")
    assert expect(True, *EXPECTATION, dataset="ml100k") is True


def test_expect_only_warns_on_other_data(monkeypatch):
    monkeypatch.delenv(run.STRICT_ENV, raising=False)
    with pytest.warns(ExpectationWarning) as record:
        assert expect(False, *EXPECTATION, dataset="shop") is False
    assert str(record[0].message) == (
        "expected the MBAE to beat popularity (test NDCG@10), but it does not hold on shop. "
        "This may not hold on small or custom data: on few users or few epochs the MBAE may be "
        "under-trained. The notebook goes on.")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert expect(True, *EXPECTATION, dataset="shop")


def test_expect_strictness_follows_the_flag(monkeypatch):
    monkeypatch.setenv(run.STRICT_ENV, "1")
    with pytest.raises(AssertionError):
        expect(False, *EXPECTATION, dataset="shop")
    monkeypatch.setenv(run.STRICT_ENV, "0")
    with pytest.warns(ExpectationWarning):
        expect(False, *EXPECTATION, dataset="ml100k")
    with pytest.raises(AssertionError):
        expect(False, *EXPECTATION, dataset="shop", strict=True)


def test_a_second_writer_of_a_run_folder_is_refused_until_the_first_is_done(tmp_path):
    folder = tmp_path / "reports" / "shop" / "smoke"
    with lock_run_dir(folder):
        with pytest.raises(RunLockedError) as err:
            with lock_run_dir(folder):
                pass
        msg = str(err.value)
        assert msg.startswith(f"another run (pid {os.getpid()}, started 20")
        assert msg.endswith(f"is writing {folder}; wait or pass --run NAME")
    with lock_run_dir(folder):          # released on exit, even though the file stays
        pass
    assert (folder / ".lock").exists()
