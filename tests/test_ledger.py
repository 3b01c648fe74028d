"""A study's ledger: refuses other settings, and keeps what parallel processes recorded."""
import json

import pytest

from fatsmb_lib.studies.ledger import Ledger


def test_two_processes_sharing_a_ledger_keep_each_others_runs(tmp_path):
    path = tmp_path / "study.json"
    first, second = Ledger(path, profile="full"), Ledger(path, profile="full")
    first.record("a", 0, {"score": 1.0})
    second.record("b", 0, {"score": 2.0})          # opened before "a" was written
    first.record("a", 1, {"score": 1.5})
    cells = json.loads(path.read_text())["cells"]
    assert cells == {"a": {"0": {"score": 1.0}, "1": {"score": 1.5}}, "b": {"0": {"score": 2.0}}}
    assert Ledger(path, profile="full").done("b", 0)


def test_a_run_another_process_recorded_since_is_seen_as_done(tmp_path):
    path = tmp_path / "study.json"
    first, second = Ledger(path, profile="full"), Ledger(path, profile="full")
    assert not first.done("a", 0)
    second.record("a", 0, {"score": 1.0})          # after `first` read the file
    assert first.done("a", 0) and first.runs("a") == {"0": {"score": 1.0}}


def test_a_ledger_made_under_other_settings_is_refused(tmp_path):
    Ledger(tmp_path / "study.json", profile="full").record("a", 0, {})
    with pytest.raises(ValueError, match="profile='full'"):
        Ledger(tmp_path / "study.json", profile="default")
