"""The baselines of the comparison (Table 3's peers and ours), each one registration.

Every baseline trains under the same protocol as FatsMB: the same views of the data, the same
full-ranking validation on the validation item, the same ``fit`` (early stopping, atomic
checkpoints, resume). Their own settings sit here with their registration and become flat
``Profile`` fields. How to add one: ``training/registry.py``.

- BERT4Rec: the MBAE's encoder without behaviors, APE, Cloze, stage 1's recipe and budget
- SASRec, the behavior-aware SASRec, GRU4Rec: next-item cross-entropy at every position
- MB-STR: behavior-aware Transformer with its own Cloze recipe (``mbstr_recipe``)
- DiffuRec: diffusion over item embeddings, on every training prefix
- MISSL: two-stream behavior-aware Transformer, next-item and next-behavior cross-entropy,
  plus multi-interest self-supervised losses
- Pop: counts, nothing to train (:func:`fit_pop`)
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from ..models.baselines import BehaviorSASRec, BERT4Rec, Pop, SASRec
from ..models.diffurec import DiffuRec, DiffuRecConfig
from ..models.gru4rec import GRU4Rec, GRU4RecConfig
from ..models.mbstr import MBSTR, MBSTRConfig
from ..models.missl import MISSL, MISSLConfig
from .context import Context
from .epochs import (
    RECIPES,
    cloze_batches,
    cloze_settings,
    next_item_batches,
    next_item_settings,
    prefix_batches,
    prefix_settings,
)
from .registry import ModelSpec, dims, encoder_configs, train
from .train import History


@dataclass(frozen=True)
class GRU4RecSettings:
    gru4rec_lr: float = 5e-3          # GRU4Rec's own learning rate (reports/README.md: why)


@dataclass(frozen=True)
class MBSTRSettings:
    mbstr_buckets: int = 32           # relative-distance buckets ...
    mbstr_max_distance: int = 40      # ... up to this distance (its authors' values)
    mbstr_shared: int = 3             # prediction head: shared experts ...
    mbstr_private: int = 1            # ... and experts per behavior
    mbstr_recipe: str = "paper"       # its Cloze recipe (epochs.RECIPES): its authors' windows


@dataclass(frozen=True)
class DiffuRecSettings:
    diffurec_T: int = 32              # diffusion steps (its authors' value)
    diffurec_schedule: str = "linear"
    diffurec_stride: int = 4          # DDIM jump at inference: T / stride approximator calls
    diffurec_lambda: float = 0.001    # δ of λ ~ N(δ, δ²) (its authors' value)


@dataclass(frozen=True)
class MISSLSettings:
    missl_interests: int = 16         # K interests per behavior and K shared (authors: 64, d 16)
    missl_interest_layers: int = 2    # rounds of the interest block (its authors' value)
    missl_epsilon: float = 0.6        # fusion keeps ⌊εK⌋ interests of each kind (Yelp, IJCAI)
    missl_tau: float = 1.0            # InfoNCE temperature (its authors' value)
    missl_lambda_behavior: float = 1.0  # next-behavior CE weight (Yelp, IJCAI; Retail 0.5)
    missl_lambda_ib: float = 0.05     # item-behavior contrast weight (Yelp, IJCAI; Retail 0.01)
    missl_lambda_inter: float = 0.05  # item-interest InfoNCE weight (Yelp, IJCAI; Retail 0.01)
    missl_lambda_intra: float = 0.05  # specific-shared interest InfoNCE weight (likewise)


# BERT4Rec and MB-STR mask no behavior (σ = 0): BERT4Rec sees none, MB-STR reads them all
cloze_without_behaviors = partial(cloze_batches, sigma=0.0)
cloze_settings_without_behaviors = partial(cloze_settings, sigma=0.0)


BERT4REC = ModelSpec("BERT4Rec", "bert4rec", BERT4Rec, encoder_configs, cloze_without_behaviors,
                     cloze_settings_without_behaviors, stage="stage1", paper=True)
SASREC = ModelSpec("SASRec", "sasrec", SASRec, encoder_configs, next_item_batches,
                   next_item_settings)
BEHAVIOR_SASREC = ModelSpec("BehaviorSASRec", "behaviorsasrec", BehaviorSASRec, encoder_configs,
                            next_item_batches, next_item_settings)
GRU4REC = ModelSpec("GRU4Rec", "gru4rec", GRU4Rec,
                    lambda ctx: (ctx.profile.config(GRU4RecConfig, **dims(ctx)),),
                    next_item_batches,
                    lambda ctx: {**next_item_settings(ctx), "max_len": ctx.profile.max_len},
                    adjust=lambda ctx: ctx.replace(lr=ctx.profile.gru4rec_lr),
                    settings=GRU4RecSettings)
MB_STR = ModelSpec("MB-STR", "mbstr", MBSTR,
                   lambda ctx: (ctx.profile.config(MBSTRConfig, **dims(ctx)),),
                   cloze_without_behaviors,
                   lambda ctx: {**cloze_settings_without_behaviors(ctx),
                                "max_len": ctx.profile.max_len},
                   adjust=lambda ctx: ctx.replace(**RECIPES[ctx.profile.mbstr_recipe]),
                   paper=True, settings=MBSTRSettings)
DIFFUREC = ModelSpec("DiffuRec", "diffurec", DiffuRec,
                     lambda ctx: (*encoder_configs(ctx), ctx.profile.config(DiffuRecConfig)),
                     prefix_batches, prefix_settings, paper=True, settings=DiffuRecSettings)
MISSL_SPEC = ModelSpec("MISSL", "missl", MISSL,
                       lambda ctx: (ctx.profile.config(MISSLConfig, **dims(ctx)),),
                       next_item_batches, next_item_settings, paper=True, settings=MISSLSettings)

# The trained baselines, in the comparison's order (Table 3's BERT4Rec, MB-STR, DiffuRec, MISSL
# and our additions).
BASELINES: dict[str, ModelSpec] = {spec.name: spec for spec in (
    SASREC, BERT4REC, GRU4REC, BEHAVIOR_SASREC, MB_STR, DIFFUREC, MISSL_SPEC)}


def train_baseline(ctx: Context, name: str) -> tuple[nn.Module, History]:
    """Train (or reload) the registered baseline ``name`` (a key of :data:`BASELINES`)."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}: choose one of {sorted(BASELINES)}")
    return train(BASELINES[name], ctx)


def fit_pop(ctx: Context, per_behavior: bool = False) -> Pop:
    """Popularity from the training part of each sequence (never the validation/test items)."""
    split = ctx.data.split()
    items = torch.as_tensor(split.train_items).long()
    behaviors = torch.as_tensor(split.train_behaviors).long()
    return Pop.fit(items, behaviors, ctx.data.n_items, ctx.data.n_behaviors,
                   per_behavior).to(ctx.device)
