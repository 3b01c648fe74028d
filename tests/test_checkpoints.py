"""Atomic writes, checkpoint round trips, the mismatch and corruption errors, digests and
fingerprints."""
from pathlib import Path

import pytest
import torch
from torch import nn

from fatsmb_lib.support import checkpoints
from fatsmb_lib.support.checkpoints import (
    CheckpointMismatchError,
    CorruptCheckpointError,
    atomic_write,
    load_checkpoint,
    move_aside,
    non_finite,
    save_checkpoint,
    settings_digest,
    state_fingerprint,
)

CONFIG = {"model": "toy", "d": 8, "ks": (10, 20)}


def test_checkpoint_round_trip(tmp_path):
    model = nn.Linear(3, 2)
    save_checkpoint(tmp_path / "a" / "ck.pt", {"model": model.state_dict(), "epoch": 3,
                                               "fingerprint": "fp-A", "config": CONFIG})
    loaded = load_checkpoint(tmp_path / "a" / "ck.pt", fingerprint="fp-A", config=CONFIG)
    assert loaded["epoch"] == 3
    assert all(torch.equal(loaded["model"][k], v) for k, v in model.state_dict().items())


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"epoch": 1, "fingerprint": "fp-A", "config": CONFIG})

    def crash(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints.torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"epoch": 2, "fingerprint": "fp-A", "config": CONFIG})
    monkeypatch.undo()
    assert load_checkpoint(path, fingerprint="fp-A", config=CONFIG)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temp file left behind


def test_atomic_write_creates_folders_and_replaces(tmp_path):
    path = tmp_path / "deep" / "file.bin"
    atomic_write(path, lambda f: f.write(b"one"))
    atomic_write(path, lambda f: f.write(b"two"))
    assert path.read_bytes() == b"two" and len(list(path.parent.iterdir())) == 1


def test_mismatched_fingerprint_is_refused_with_the_way_out(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"fingerprint": "fp-A", "config": CONFIG})
    with pytest.raises(CheckpointMismatchError,
                       match=r"ck\.pt was trained on other data \(dataset fingerprint fp-A -> fp-B\)"
                             r".*rm '.*ck\.pt'"):
        load_checkpoint(path, fingerprint="fp-B", config=CONFIG)


def test_mismatched_config_is_refused_naming_the_key(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"fingerprint": "fp-A", "config": CONFIG})
    with pytest.raises(CheckpointMismatchError, match=r"d: 8 -> 16.*delete the file"):
        load_checkpoint(path, fingerprint="fp-A", config={**CONFIG, "d": 16})
    assert issubclass(CheckpointMismatchError, ValueError)


def test_settings_digest_ignores_key_order_and_tuples_but_not_values():
    a = settings_digest({"x": 1, "y": (1, 2), "z": {"p": 0.1}})
    assert a == settings_digest({"z": {"p": 0.1}, "y": [1, 2], "x": 1})
    assert a != settings_digest({"x": 1, "y": (1, 2), "z": {"p": 0.2}})
    assert len(a) == 8


def test_state_fingerprint_follows_the_weights():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    before = state_fingerprint(model)
    assert state_fingerprint(model) == before
    with torch.no_grad():
        model.bias[0] += 1e-6
    assert state_fingerprint(model) != before


# ----------------------------------------------------------------------------- unusable files


def _write_valid(path):
    save_checkpoint(path, {"epoch": 1, "fingerprint": "fp-A", "config": CONFIG,
                           "model": nn.Linear(3, 2).state_dict()})


@pytest.mark.parametrize("damage, reason", [
    (lambda p: p.write_bytes(b""), r"unreadable \(zero bytes\)"),
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), r"unreadable \("),
    (lambda p: p.write_bytes(b"garbage, not a checkpoint\n" * 10), r"unreadable \("),
])
def test_zero_byte_truncated_or_garbage_file_is_a_corrupt_checkpoint(tmp_path, damage, reason):
    path = tmp_path / "ck.pt"
    _write_valid(path)
    damage(path)
    with pytest.raises(CorruptCheckpointError, match=rf"checkpoint {path} is {reason}") as err:
        load_checkpoint(path, fingerprint="fp-A", config=CONFIG)
    assert "weights_only=False" not in str(err.value)   # never the advice to run its code


def test_a_foreign_pickle_is_refused_without_running_it(tmp_path):
    path = tmp_path / "ck.pt"
    torch.save({"fingerprint": "fp-A", "config": CONFIG, "x": Path("/etc")}, path)  # a class
    with pytest.raises(CorruptCheckpointError, match="not a file of tensors and plain containers"):
        load_checkpoint(path, fingerprint="fp-A", config=CONFIG)


def test_a_torch_file_that_is_not_ours_and_one_holding_nan(tmp_path):
    torch.save(nn.Linear(3, 2).state_dict(), tmp_path / "weights.pt")
    with pytest.raises(CorruptCheckpointError, match=r"not a checkpoint of this project \(no fingerprint, config\)"):
        load_checkpoint(tmp_path / "weights.pt", fingerprint="fp-A", config=CONFIG)
    state = nn.Linear(3, 2).state_dict()
    state["bias"][0] = float("nan")
    save_checkpoint(tmp_path / "nan.pt", {"fingerprint": "fp-A", "config": CONFIG, "model": state})
    with pytest.raises(CorruptCheckpointError, match=r"holds non-finite numbers \(model\.bias\)"):
        load_checkpoint(tmp_path / "nan.pt", fingerprint="fp-A", config=CONFIG)


def test_move_aside_never_overwrites(tmp_path):
    first, second = tmp_path / "ck.pt", tmp_path / "ck.pt"
    first.write_bytes(b"one")
    a = move_aside(first)
    second.write_bytes(b"two")
    b = move_aside(second)
    assert a != b and a.read_bytes() == b"one" and b.read_bytes() == b"two"
    assert a.name.startswith("ck.pt.corrupt-") and not (tmp_path / "ck.pt").exists()


def test_non_finite_names_nested_tensors():
    state = {"model": {"w": torch.tensor([1.0, float("inf")]), "n": torch.tensor([1, 2])},
             "optimizer": {"state": {0: {"exp_avg": torch.tensor([float("nan")])}}}, "lr": 0.1}
    assert non_finite(state) == ["model.w", "optimizer.state.0.exp_avg"]
