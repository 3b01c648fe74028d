"""The registration of a trainable model: its settings, how it is built, what it trains on and
its checkpoint's name, in one :class:`ModelSpec`; :func:`train` trains any of them.

Adding a baseline takes one module and one registration:

1. ``fatsmb_lib/models/<name>.py``: the model (a ``models.contract.Recommender``: ``loss`` and
   ``score_all`` on the batch vocabulary of ``models.contract``) and its config dataclass,
   whose fields use the profile's names (``d_model``, ``dropout``, ``<name>_...``).
2. In ``training/peers.py``: a ``ModelSpec`` (and, if the model has settings of its own, a
   frozen dataclass of them with their defaults, ``<name>_...`` fields, as its ``settings``),
   added to ``BASELINES``. ``Profile`` then has those fields (flat, for papermill and
   ``open_run``), ``compare`` trains and reports the model, and the notebooks can call
   ``peers.train_baseline(ctx, name)``.

A model that needs data at construction (the graph baselines: the training parts' user-item
graph) gets it from ``inputs(ctx)``, keyword arguments of its constructor. They are not in the
checkpoint's digest (configs are, and cannot hold tensors): ``inputs`` must be a function of
``ctx.data`` alone, which the data fingerprint already covers.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from typing import Callable

from torch import nn

from ..models.encoder import EncoderConfig
from .context import Context
from .epochs import Batches
from .train import History


# the kinds of recommender a baseline is (the paper's Section 4.1.3 groups them alike)
FAMILIES = ("single-behavior sequential", "multi-behavior sequential", "multi-behavior graph")


@dataclass(frozen=True)
class ModelSpec:
    """One model's registration.

    ``model(*configs(ctx))`` builds it; ``batches(ctx)`` are its epochs and
    ``data_settings(ctx)`` what of the profile shapes them; ``key`` names its checkpoint file
    (formatted with the profile's fields, e.g. ``"mbae-{position}"``); ``stage`` picks the
    epoch budget (``"stage1"``: the Cloze models share stage 1's; ``"baseline"``); ``adjust``
    returns the run it trains in (its own learning rate or recipe). ``paper``: one of the
    paper's Table 3 baselines (its "Improve" row compares against these). ``family``: one of
    :data:`FAMILIES`, how the notebooks group the baselines. ``settings``: a
    frozen dataclass of the model's own profile fields, or None. ``inputs``: keyword arguments
    of the model's constructor made from the run's data (e.g. a graph), not hashed into the
    checkpoint's digest: a function of ``ctx.data`` only (the data fingerprint covers it);
    None: the model takes none, ``model(*configs(ctx))``.
    """

    name: str
    key: str
    model: type[nn.Module]
    configs: Callable[[Context], tuple]
    batches: Callable[[Context], Batches]
    data_settings: Callable[[Context], dict]
    stage: str = "baseline"
    adjust: Callable[[Context], Context] = lambda ctx: ctx
    paper: bool = False
    family: str = ""
    settings: type | None = None
    inputs: Callable[[Context], dict] | None = None


def dims(ctx: Context) -> dict:
    """The data's sizes every model config takes: ``n_items``, ``n_behaviors``."""
    return {"n_items": ctx.data.n_items, "n_behaviors": ctx.data.n_behaviors}


def train(spec: ModelSpec, ctx: Context) -> tuple[nn.Module, History]:
    """Train (or reload) ``spec``'s model in ``ctx`` through ``Context.fit``: the checkpoint's
    digest holds the model's configs, the batches' settings and the optimisation settings
    (not ``spec.inputs``: the data's fingerprint stands for them)."""
    ctx = spec.adjust(ctx)
    configs = spec.configs(ctx)
    factory = spec.model if spec.inputs is None else partial(spec.model, **spec.inputs(ctx))
    model = ctx.build(factory, *configs)
    settings = {"model": spec.name, "config": [dataclasses.asdict(c) for c in configs],
                **spec.data_settings(ctx)}
    history = ctx.fit(model, spec.key.format(**ctx.profile.to_dict()), spec.stage,
                      model.parameters(), spec.batches(ctx), model.loss, settings)
    return model, history


def encoder_configs(ctx: Context) -> tuple:
    """The MBAE's encoder config, from the profile (the baselines built on it switch
    behaviors, positions or causality off themselves)."""
    return (ctx.profile.config(EncoderConfig, **dims(ctx)),)
