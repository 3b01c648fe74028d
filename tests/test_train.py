"""The training loop: randomness per epoch, exact resume, NaN guard, early stopping, lr schedule."""
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fatsmb_lib.support.checkpoints import CheckpointMismatchError
from fatsmb_lib.support.runtime import epoch_generator, make_generator
from fatsmb_lib.training.evaluate import evaluate
from fatsmb_lib.training.train import (
    CheckpointWarning,
    History,
    NonFiniteLossError,
    NonFiniteWeightsError,
    TrainConfig,
    fit,
)

N, L, D = 20, 6, 8
CONFIG = {"model": "toy", "d": D, "ks": (10, 20)}
TRAIN = dict(lr=2e-3, weight_decay=0.01, max_epochs=4, patience=100, min_epochs=1, grad_clip=1.0,
             monitor="NDCG@10", seed=0, eval_every=1, warmup_epochs=0, lr_decay="none",
             precision="fp32")


class ToyModel(nn.Module):
    """Mean of item embeddings (with dropout, so the global RNG matters) scored against all items."""

    def __init__(self):
        super().__init__()
        self.item = nn.Embedding(N + 2, D)  # 0 padding, 1..N items, N+1 [mask]
        self.bias = nn.Parameter(torch.zeros(N))
        self.drop = nn.Dropout(0.2)

    def score_all(self, batch, generator=None):
        h = self.drop(self.item(batch["items"]).mean(dim=1))  # (B, D)
        return h @ self.item.weight[1 : N + 1].T + self.bias  # (B, N)

    def loss(self, batch):
        return F.cross_entropy(self.score_all(batch), batch["target"] - 1)


def make_data(n_rows=48, seed=0):
    g = make_generator(seed)
    items = torch.randint(1, N + 1, (n_rows, L), generator=g)
    items[:, -1] = N + 1
    target = (items[:, 0] % N) + 1  # learnable: the target follows the first item
    behaviors = torch.randint(1, 4, (n_rows, L), generator=g)
    return {"items": items, "behaviors": behaviors, "target": target,
            "target_behavior": behaviors[:, -1], "user": torch.arange(n_rows)}


DATA = make_data()


def batches(epoch, batch_size=16):
    perm = torch.randperm(DATA["items"].shape[0], generator=epoch_generator(0, epoch))
    for start in range(0, len(perm), batch_size):
        rows = perm[start : start + batch_size]
        yield {k: v[rows] for k, v in DATA.items()}


def validate_fn(model):
    return lambda: evaluate(model, [DATA], ks=(10,))


def run_fit(model, tmp_path, name="ck.pt", train_batches=batches, validate=None, loss_fn=None, **cfg):
    cfg = TrainConfig(**{**TRAIN, **cfg})
    return fit(model, params=model.parameters(), train_batches=train_batches,
               loss_fn=loss_fn or model.loss, validate=validate or validate_fn(model), cfg=cfg,
               checkpoint_path=tmp_path / name if tmp_path else None, fingerprint="fp-A",
               config=CONFIG, progress=False, log=lambda s: None)


def states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------- randomness


def test_each_epoch_draws_new_dropout_masks(tmp_path):
    seen = {}

    def train_batches(epoch):
        for i, batch in enumerate(batches(epoch)):
            if i == 0:  # the first draw of the epoch's global stream, before any dropout
                seen[epoch] = torch.rand(8)
            yield batch

    run_fit(ToyModel(), tmp_path, train_batches=train_batches, max_epochs=3)
    assert not torch.equal(seen[1], seen[2]) and not torch.equal(seen[2], seen[3])


def test_validation_does_not_change_the_training_stream(tmp_path):
    torch.manual_seed(0)
    quiet = ToyModel()
    torch.manual_seed(0)
    noisy = ToyModel()

    def noisy_validate():
        torch.rand(1000)  # a validation that consumes the global generator
        torch.manual_seed(123)  # or even re-seeds it, as the old Context.evaluate did
        return evaluate(noisy, [DATA], ks=(10,))

    run_fit(quiet, tmp_path, name="quiet.pt")
    run_fit(noisy, tmp_path, name="noisy.pt", validate=noisy_validate)
    assert states_equal(quiet.state_dict(), noisy.state_dict())


def test_same_seed_twice_gives_identical_runs_and_another_seed_does_not(tmp_path):
    histories, states = [], []
    for name, seed in (("a.pt", 0), ("b.pt", 0), ("c.pt", 1)):
        torch.manual_seed(7)  # same initial weights for all three
        model = ToyModel()
        histories.append(run_fit(model, tmp_path, name=name, seed=seed))
        states.append(snapshot(model))
    assert histories[0].val_metrics == histories[1].val_metrics
    assert states_equal(states[0], states[1])
    assert not states_equal(states[0], states[2])  # the seed drives dropout


def test_learning_rate_warmup_and_cosine_decay():
    cfg = TrainConfig(**{**TRAIN, "lr": 1.0, "max_epochs": 12, "warmup_epochs": 3, "lr_decay": "cosine"})
    assert [cfg.lr_at(e) for e in (1, 2, 3)] == [0.25, 0.5, 0.75]
    assert cfg.lr_at(4) == pytest.approx(1.0)
    assert cfg.lr_at(12) == pytest.approx(0.5 * (1 + math.cos(math.pi * 8 / 9)))  # near 0
    flat = TrainConfig(**TRAIN)
    assert {flat.lr_at(e) for e in range(1, 5)} == {TRAIN["lr"]}
    with pytest.raises(ValueError, match="lr_decay must be"):
        TrainConfig(**{**TRAIN, "lr_decay": "linear"})


def test_fit_applies_the_schedule_to_the_optimizer(tmp_path):
    seen = []
    model = ToyModel()

    def train_batches(epoch):
        yield from batches(epoch)

    original = torch.optim.AdamW.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    torch.optim.AdamW.step = spy
    try:
        run_fit(model, None, train_batches=train_batches, max_epochs=3, lr=0.3, warmup_epochs=2)
    finally:
        torch.optim.AdamW.step = original
    per_epoch = len(seen) // 3
    assert seen[0] == pytest.approx(0.1) and seen[per_epoch] == pytest.approx(0.2)
    assert seen[-1] == pytest.approx(0.3)


def test_a_finished_cosine_run_reloads_instead_of_retraining(tmp_path):
    """The schedule's learning rates are plain floats: a numpy scalar in the optimizer's state
    made the checkpoint unreadable weights-only, so it was moved aside and retrained."""
    assert type(TrainConfig(**{**TRAIN, "lr_decay": "cosine"}).lr_at(2)) is float
    run_fit(ToyModel(), tmp_path, max_epochs=3, lr_decay="cosine")

    def must_not_train(epoch):
        raise AssertionError("a finished cosine-decay run was retrained")

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no CheckpointWarning about an unreadable file
        run_fit(ToyModel(), tmp_path, max_epochs=3, lr_decay="cosine", train_batches=must_not_train)


# ----------------------------------------------------------------------------- fit


def test_interrupted_run_resumes_exactly(tmp_path):
    torch.manual_seed(0)
    straight = ToyModel()
    h_straight = run_fit(straight, tmp_path, name="straight.pt")

    torch.manual_seed(0)
    interrupted = ToyModel()

    def stop_at_epoch_3(epoch):
        if epoch == 3:
            raise KeyboardInterrupt
        return batches(epoch)

    with pytest.raises(KeyboardInterrupt):
        run_fit(interrupted, tmp_path, name="resumed.pt", train_batches=stop_at_epoch_3)
    ck = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert ck["epoch"] == 2 and not ck["finished"]

    torch.manual_seed(99)  # a different init and global RNG: everything must come from the checkpoint
    torch.rand(17)
    resumed = ToyModel()
    h_resumed = run_fit(resumed, tmp_path, name="resumed.pt")
    assert states_equal(resumed.state_dict(), straight.state_dict())
    assert h_resumed.epochs == h_straight.epochs == [1, 2, 3, 4]
    assert h_resumed.train_loss == h_straight.train_loss
    assert h_resumed.val_metrics == h_straight.val_metrics
    last_straight = torch.load(tmp_path / "straight.pt", weights_only=True)["model"]
    last_resumed = torch.load(tmp_path / "resumed.pt", weights_only=True)["model"]
    assert states_equal(last_straight, last_resumed)


def test_training_learns_and_finished_run_is_not_retrained(tmp_path):
    torch.manual_seed(0)
    model = ToyModel()
    before = evaluate(model, [DATA], ks=(10,))["NDCG@10"]
    history = run_fit(model, tmp_path, max_epochs=30, lr=2e-2)
    assert history.best_value > before + 0.2
    assert history.train_loss[-1] < history.train_loss[0]
    trained = snapshot(model)

    def must_not_train(epoch):
        raise AssertionError("a finished run was retrained")

    again = ToyModel()
    h2 = run_fit(again, tmp_path, max_epochs=30, lr=2e-2, train_batches=must_not_train)
    assert states_equal(again.state_dict(), trained)
    assert h2.to_dict() == history.to_dict()
    assert History.from_dict(history.to_dict()) == history


def test_non_finite_loss_raises_and_keeps_last_good_checkpoint(tmp_path):
    model = ToyModel()
    current = {"epoch": 0}
    after_epoch_1 = {}

    def train_batches(epoch):
        current["epoch"] = epoch
        return batches(epoch)

    def loss_fn(batch):
        loss = model.loss(batch)
        return loss * float("nan") if current["epoch"] == 2 else loss

    def validate():
        after_epoch_1.setdefault("state", snapshot(model))
        return evaluate(model, [DATA], ks=(10,))

    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 1; the last good checkpoint"):
        run_fit(model, tmp_path, train_batches=train_batches, loss_fn=loss_fn, validate=validate)
    ck = torch.load(tmp_path / "ck.pt", weights_only=True)
    assert ck["epoch"] == 1 and not ck["finished"]
    assert states_equal(ck["model"], after_epoch_1["state"])
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


def test_early_stopping_after_patience_and_best_weights_restored(tmp_path):
    model = ToyModel()
    scripted = iter([0.1, 0.3, 0.2, 0.25, 0.29, 0.9])  # best at epoch 2, then 3 evaluations without gain
    states = {}

    def validate():
        value = next(scripted)
        states[len(states) + 1] = snapshot(model)
        return {"NDCG@10": value}

    history = run_fit(model, tmp_path, validate=validate, max_epochs=10, patience=3)
    assert history.epochs == [1, 2, 3, 4, 5]
    assert history.stopped_early and history.best_epoch == 2 and history.best_value == 0.3
    assert states_equal(model.state_dict(), states[2])
    assert not states_equal(states[5], states[2])  # training did move the weights after epoch 2


def test_min_epochs_and_eval_every(tmp_path):
    model = ToyModel()
    history = run_fit(model, tmp_path, validate=lambda: {"NDCG@10": 0.5}, max_epochs=8,
                      patience=1, min_epochs=6, eval_every=2)
    # evaluations at epochs 2, 4, 6; the first sets the best, the next ones never improve,
    # patience 1 is exhausted at epoch 4, but min_epochs keeps training until epoch 6
    assert history.epochs == [1, 2, 3, 4, 5, 6]
    assert history.metric("NDCG@10") == ([2, 4, 6], [0.5, 0.5, 0.5])
    assert history.val_metrics[0] == {}


def test_missing_monitor_key_is_a_clear_error(tmp_path):
    with pytest.raises(KeyError, match="monitor='NDCG@10' is not among the validation metrics"):
        run_fit(ToyModel(), tmp_path, validate=lambda: {"Recall@10": 0.1})


def test_frozen_parameters_do_not_change(tmp_path):
    model = ToyModel()
    frozen = model.item.weight.detach().clone()
    bias = model.bias.detach().clone()
    fit(model, params=[model.bias], train_batches=batches, loss_fn=model.loss,
        validate=validate_fn(model), cfg=TrainConfig(**{**TRAIN, "max_epochs": 2, "lr": 1e-2}),
        checkpoint_path=None, fingerprint="fp-A", config=CONFIG, progress=False, log=lambda s: None)
    assert torch.equal(model.item.weight, frozen)
    assert not torch.equal(model.bias, bias)


def test_fit_refuses_a_checkpoint_from_another_train_config(tmp_path):
    run_fit(ToyModel(), tmp_path, max_epochs=1)
    with pytest.raises(CheckpointMismatchError, match=r"train_config\.lr: 0\.002 -> 0\.001"):
        run_fit(ToyModel(), tmp_path, max_epochs=1, lr=1e-3)


def test_non_finite_weights_are_caught_before_any_checkpoint_holds_them(tmp_path):
    """The loss can stay finite while a step leaves NaN in the weights; with eval_every=2
    nothing validates epoch 1, so only the weight check keeps NaN out of the checkpoint."""
    model = ToyModel()

    def poisoned(epoch):
        yield from batches(epoch)
        if epoch == 3:  # after the epoch's last step: every loss of the epoch was finite
            with torch.no_grad():
                model.bias[0] = float("nan")

    with pytest.raises(NonFiniteWeightsError) as err:
        run_fit(model, tmp_path, train_batches=poisoned, eval_every=2)
    msg = str(err.value)
    assert msg.startswith("weights became non-finite during epoch 3 (model.bias), although the "
                          "loss stayed finite; nothing of this epoch was saved; the last good "
                          f"checkpoint, {tmp_path / 'ck.pt'} (end of epoch 2), is kept untouched.")
    assert "Lower the learning rate (now 0.002)" in msg
    ck = torch.load(tmp_path / "ck.pt", weights_only=True)
    assert ck["epoch"] == 2 and torch.isfinite(ck["model"]["bias"]).all()


def test_nan_in_the_first_epoch_says_there_is_no_good_checkpoint(tmp_path):
    model = ToyModel()
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 1; there is no good checkpoint: "
                                                 r"nothing was written to .*ck\.pt"):
        run_fit(model, tmp_path, loss_fn=lambda batch: model.loss(batch) * float("nan"))
    assert not (tmp_path / "ck.pt").exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all\n" * 8])
def test_an_unreadable_checkpoint_is_moved_aside_and_training_starts_afresh(tmp_path, content):
    torch.manual_seed(0)
    reference = ToyModel()
    run_fit(reference, tmp_path, name="reference.pt")
    (tmp_path / "ck.pt").write_bytes(content)
    torch.manual_seed(0)
    model = ToyModel()
    with pytest.warns(CheckpointWarning, match=r"checkpoint .*ck\.pt is unreadable .*: moved it "
                                               r"to ck\.pt\.corrupt-\d{8}-\d{6} and training from scratch"):
        history = run_fit(model, tmp_path)
    assert history.epochs == [1, 2, 3, 4] and states_equal(model.state_dict(), reference.state_dict())
    (aside,) = tmp_path.glob("ck.pt.corrupt-*")
    assert aside.read_bytes() == content


def test_a_full_disk_during_a_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    from fatsmb_lib.support import checkpoints

    model = ToyModel()
    real_save = checkpoints.torch.save
    calls = {"n": 0}

    def fills_up(obj, f):
        calls["n"] += 1
        if calls["n"] == 2:                  # the checkpoint of epoch 2
            f.write(b"half a checkpoint")
            raise OSError(28, "No space left on device")
        real_save(obj, f)

    monkeypatch.setattr(checkpoints.torch, "save", fills_up)
    with pytest.raises(OSError, match=r"could not write checkpoint .*ck\.pt \(No space left on "
                                      r"device\); the last good checkpoint, .*ck\.pt \(end of "
                                      r"epoch 1\), is kept untouched\. Free some disk space"):
        run_fit(model, tmp_path)
    assert torch.load(tmp_path / "ck.pt", weights_only=True)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


def test_bf16_training_learns_like_fp32(tmp_path):
    results = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = ToyModel()
        history = run_fit(model, tmp_path, name=f"{precision}.pt", max_epochs=30, lr=2e-2,
                          precision=precision)
        results[precision] = history.best_value
    assert results["bf16"] > 0.5 and abs(results["bf16"] - results["fp32"]) < 0.1


def test_keep_initial_counts_the_starting_weights_as_epoch_0(tmp_path):
    """With ``keep_initial`` no epoch that validates worse than the start is kept: a run whose
    every epoch makes validation worse ends with the weights it started from."""
    model = ToyModel()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    scores = iter([0.5, 0.4, 0.3, 0.2])                        # the start, then worse each epoch
    history = fit(model, params=model.parameters(), train_batches=batches, loss_fn=model.loss,
                  validate=lambda: {"NDCG@10": next(scores)},
                  cfg=TrainConfig(**{**TRAIN, "max_epochs": 3}), checkpoint_path=tmp_path / "k.pt",
                  fingerprint="fp-A", config=CONFIG, progress=False, log=lambda line: None,
                  keep_initial=True)
    assert history.best_epoch == 0 and history.initial == {"NDCG@10": 0.5}
    assert history.epochs == [1, 2, 3]
    assert all(torch.equal(v, start[k]) for k, v in model.state_dict().items())
    assert not all(torch.equal(v, start[k]) for k, v in ToyModel().state_dict().items())
