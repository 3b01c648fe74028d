"""Shared pytest setup: one CPU thread so numbers are reproducible on every machine, and the
code under test in every process the tests start (notebook kernels, killed training runs)."""
import os
from pathlib import Path

import pytest
import torch

import fatsmb_lib
from fatsmb_lib.data.batches import PrefixView, make_loader
from fatsmb_lib.data.preprocess import load_dataset
from fatsmb_lib.models.baselines import Pop
from fatsmb_lib.training.evaluate import evaluate

torch.set_num_threads(1)

# Kernels and subprocesses import fatsmb_lib from this checkout, not from whichever copy is
# installed in the environment.
PACKAGE_ROOT = str(Path(fatsmb_lib.__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (PACKAGE_ROOT, os.environ.get("PYTHONPATH"))))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """synthetic-tiny (200 users, 299 items), its validation loader (L = 20) and popularity's
    validation NDCG@10: what a model's short learning run must beat (``learning.py``)."""
    data = load_dataset("synthetic-tiny", tmp_path_factory.mktemp("data"))
    valid = make_loader(PrefixView(data, 20, "valid"), 1024, False)
    split = data.split()
    pop = Pop.fit(torch.as_tensor(split.train_items).long(),
                  torch.as_tensor(split.train_behaviors).long(), data.n_items, data.n_behaviors)
    return data, valid, evaluate(pop, valid, ks=(10,))["NDCG@10"]
