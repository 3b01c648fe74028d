"""Shared pytest setup: one CPU thread so numbers are reproducible on every machine, and the
code under test in every process the tests start (notebook kernels, killed training runs)."""
import os
from pathlib import Path

import torch

import fatsmb_lib

torch.set_num_threads(1)

# Kernels and subprocesses import fatsmb_lib from this checkout, not from whichever copy is
# installed in the environment.
PACKAGE_ROOT = str(Path(fatsmb_lib.__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (PACKAGE_ROOT, os.environ.get("PYTHONPATH"))))
