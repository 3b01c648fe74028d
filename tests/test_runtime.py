"""Seeds, generators and devices."""
import random

import numpy as np
import pytest
import torch

from fatsmb_lib.support import runtime
from fatsmb_lib.support.runtime import (
    count_parameters,
    epoch_generator,
    epoch_seed,
    make_generator,
    resolve_device,
    seed_everything,
)


def test_seed_everything_seeds_all_three_generators():
    seed_everything(3)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(3)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_make_generator_is_independent_of_global_rng():
    a = torch.rand(3, generator=make_generator(5))
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3, generator=make_generator(5)), a)


def test_epoch_seeds_are_distinct_per_seed_epoch_and_stream():
    seeds = {epoch_seed(s, e, stream) for s in range(5) for e in range(1, 200) for stream in (0, 1)}
    assert len(seeds) == 5 * 199 * 2
    draws = [torch.rand(4, generator=epoch_generator(0, e)) for e in (1, 2)]
    assert not torch.equal(*draws)
    assert torch.equal(torch.rand(4, generator=epoch_generator(0, 1)), draws[0])


def test_resolve_device_auto_follows_cuda_availability(monkeypatch):
    monkeypatch.setattr(runtime.torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(runtime.torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_resolve_device_cuda_without_gpu_says_what_to_do(name):
    with pytest.raises(RuntimeError, match=r"torch.cuda.is_available\(\) is False: use device='cpu' or 'auto'"):
        resolve_device(name)


@pytest.mark.parametrize("name, problem", [
    ("cdua", "torch knows no such device"),
    ("gpu", "torch knows no such device"),
    ("meta", "this project runs only on cpu, cuda or mps"),
])
def test_a_misspelled_device_gets_the_same_advice_as_a_missing_gpu(name, problem):
    with pytest.raises(RuntimeError) as err:
        resolve_device(name)
    assert str(err.value) == (f"device={name!r} was requested but {problem}: use device='cpu' or "
                              f"'auto' (or 'cuda' / 'cuda:N' on a machine with a GPU)")


def test_count_parameters_respects_requires_grad():
    model = torch.nn.Sequential(torch.nn.Embedding(22, 8), torch.nn.Linear(8, 20))
    assert count_parameters(model) == 22 * 8 + 8 * 20 + 20
    model[0].weight.requires_grad_(False)
    assert count_parameters(model) == 8 * 20 + 20
    assert count_parameters(model, trainable_only=False) == 22 * 8 + 8 * 20 + 20
