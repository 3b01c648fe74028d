"""The baselines of the comparison (Table 3's peers and ours), each one registration.

Every baseline trains under the same protocol as FatsMB: the same views of the data, the same
full-ranking validation on the validation item, the same ``fit`` (early stopping, atomic
checkpoints, resume). Their own settings sit here with their registration and become flat
``Profile`` fields. How to add one: ``training/registry.py``.

- BERT4Rec: the MBAE's encoder without behaviors, APE, Cloze, stage 1's recipe and budget
- SASRec, the behavior-aware SASRec, GRU4Rec: next-item cross-entropy at every position
- MB-STR: behavior-aware Transformer with its own Cloze recipe (``mbstr_recipe``)
- DiffuRec: diffusion over item embeddings, on every training prefix
- MBGCN, MB-GMN: graph models over the training parts' user-item graph (``data.graph``),
  trained on every training interaction (``InteractionView``), a user scored by its id
- M-GPT: interaction-level graph + multifaceted Transformer, Cloze (``mgpt_recipe``)
- PBAT: Gaussian behavior-aware Transformer personalised per user, with its own Cloze recipe
  (``pbat_recipe``)
- MISSL: two-stream behavior-aware Transformer, next-item and next-behavior cross-entropy,
  plus multi-interest self-supervised losses
- Pop: counts, nothing to train (:func:`fit_pop`)
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from ..data.graph import training_graph
from ..models.baselines import BehaviorSASRec, BERT4Rec, Pop, SASRec
from ..models.diffurec import DiffuRec, DiffuRecConfig
from ..models.gru4rec import GRU4Rec, GRU4RecConfig
from ..models.mbgcn import MBGCN, MBGCNConfig
from ..models.mbgmn import MBGMN, MBGMNConfig
from ..models.mbstr import MBSTR, MBSTRConfig
from ..models.mgpt import MGPT, MGPTConfig
from ..models.missl import MISSL, MISSLConfig
from ..models.pbat import PBAT, PBATConfig
from .context import Context
from .epochs import (
    RECIPES,
    cloze_batches,
    cloze_settings,
    interaction_batches,
    interaction_settings,
    next_item_batches,
    next_item_settings,
    prefix_batches,
    prefix_settings,
)
from .registry import FAMILIES, ModelSpec, dims, encoder_configs, train
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
class MBGCNSettings:
    mbgcn_lambda: float = 1.0             # λ, weight of the item-based score (its authors' 1)
    mbgcn_message_dropout: float = 0.2    # its authors' values
    mbgcn_node_dropout: float = 0.2
    mbgcn_batch_size: int = 2048          # interactions per step (its authors' 2048): every
                                          # step propagates over the whole graph


@dataclass(frozen=True)
class MBGMNSettings:
    mbgmn_layers: int = 2                 # GNN layers (its authors' 2)
    mbgmn_rank: int = 4                   # rank of the meta transformation (its authors' 4)
    mbgmn_negatives: int = 1              # uniform negatives per training row (authors' 1)
    mbgmn_batch_size: int = 2048          # interactions per step (its authors': 256 users
                                          # with up to 40 pairs per behavior each)


@dataclass(frozen=True)
class MGPTSettings:
    mgpt_orders: int = 3              # graph orders K (its authors' item_level)
    mgpt_sessions: int = 4            # coarse grain: sessions per sequence ...
    mgpt_queries: int = 10            # ... and preference queries per session (its authors')
    mgpt_fine_sessions: int = 10      # fine grain: the same (its authors' 10 and 4)
    mgpt_fine_queries: int = 4
    mgpt_lp: float = 4.0              # p of the L_p pooling over the queries (its authors')
    mgpt_l1: float = 6.4e-4           # λ of ‖A‖₁ per sequence: its authors' 1e-5 per batch of 64
    mgpt_hide_target: bool = False    # True: its authors' [mask] without behavior (Cloze σ = 1)
    mgpt_recipe: str = "paper"        # its Cloze recipe (epochs.RECIPES; "profile": the
                                      # profile's own, every prefix on `full`: ~40x the rows)


@dataclass(frozen=True)
class PBATSettings:
    # NOTE: the authors' loader draws one window per user and epoch (the newest L items, or 20%
    # of the time a random window of a longer history) and trains with Adam (lr 1e-3, weight
    # decay 1e-6); "paper" tiles each training part with non-overlapping windows (every training
    # position once an epoch, as MB-STR's), under the optimiser every peer shares here
    pbat_recipe: str = "paper"        # its Cloze recipe (epochs.RECIPES): its authors' windows
    pbat_rho: float = 0.2             # its mask probability ρ (its authors' 0.2; 0.3 on IJCAI)


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


# BERT4Rec, MB-STR and PBAT mask no behavior (σ = 0): BERT4Rec sees none, the others read them
# all
cloze_without_behaviors = partial(cloze_batches, sigma=0.0)
cloze_settings_without_behaviors = partial(cloze_settings, sigma=0.0)


SINGLE, MULTI, GRAPH = FAMILIES

BERT4REC = ModelSpec("BERT4Rec", "bert4rec", BERT4Rec, encoder_configs, cloze_without_behaviors,
                     cloze_settings_without_behaviors, stage="stage1", paper=True, family=SINGLE)
SASREC = ModelSpec("SASRec", "sasrec", SASRec, encoder_configs, next_item_batches,
                   next_item_settings, family=SINGLE)
BEHAVIOR_SASREC = ModelSpec("BehaviorSASRec", "behaviorsasrec", BehaviorSASRec, encoder_configs,
                            next_item_batches, next_item_settings, family=MULTI)
GRU4REC = ModelSpec("GRU4Rec", "gru4rec", GRU4Rec,
                    lambda ctx: (ctx.profile.config(GRU4RecConfig, **dims(ctx)),),
                    next_item_batches,
                    lambda ctx: {**next_item_settings(ctx), "max_len": ctx.profile.max_len},
                    adjust=lambda ctx: ctx.replace(lr=ctx.profile.gru4rec_lr),
                    settings=GRU4RecSettings, family=SINGLE)
MB_STR = ModelSpec("MB-STR", "mbstr", MBSTR,
                   lambda ctx: (ctx.profile.config(MBSTRConfig, **dims(ctx)),),
                   cloze_without_behaviors,
                   lambda ctx: {**cloze_settings_without_behaviors(ctx),
                                "max_len": ctx.profile.max_len},
                   adjust=lambda ctx: ctx.replace(**RECIPES[ctx.profile.mbstr_recipe]),
                   paper=True, settings=MBSTRSettings, family=MULTI)
DIFFUREC = ModelSpec("DiffuRec", "diffurec", DiffuRec,
                     lambda ctx: (*encoder_configs(ctx), ctx.profile.config(DiffuRecConfig)),
                     prefix_batches, prefix_settings, paper=True, settings=DiffuRecSettings,
                     family=SINGLE)
PBAT_SPEC = ModelSpec("PBAT", "pbat", PBAT,
                      lambda ctx: (ctx.profile.config(PBATConfig, **dims(ctx),
                                                      n_users=ctx.data.n_users),),
                      cloze_without_behaviors,
                      lambda ctx: {**cloze_settings_without_behaviors(ctx),
                                   "max_len": ctx.profile.max_len},
                      adjust=lambda ctx: ctx.replace(**RECIPES[ctx.profile.pbat_recipe],
                                                     rho=ctx.profile.pbat_rho),
                      paper=True, settings=PBATSettings, family=MULTI)

# the graph baselines are built with the training parts' graph (not hashed: a function of the
# data, whose fingerprint is in every checkpoint)
graph_inputs = lambda ctx: {"graph": training_graph(ctx.data)}  # noqa: E731
MBGCN_SPEC = ModelSpec("MBGCN", "mbgcn", MBGCN,
                       lambda ctx: (ctx.profile.config(MBGCNConfig, **dims(ctx)),),
                       lambda ctx: interaction_batches(ctx, ctx.profile.mbgcn_batch_size),
                       lambda ctx: interaction_settings(ctx, ctx.profile.mbgcn_batch_size),
                       paper=True, settings=MBGCNSettings, inputs=graph_inputs, family=GRAPH)
MB_GMN = ModelSpec("MB-GMN", "mbgmn", MBGMN,
                   lambda ctx: (ctx.profile.config(MBGMNConfig, **dims(ctx)),),
                   lambda ctx: interaction_batches(ctx, ctx.profile.mbgmn_batch_size),
                   lambda ctx: interaction_settings(ctx, ctx.profile.mbgmn_batch_size),
                   paper=True, settings=MBGMNSettings, inputs=graph_inputs, family=GRAPH)


def mgpt_sigma(ctx: Context) -> float:
    """M-GPT's Cloze σ: 0, a masked item keeps its behavior (the target behavior's way in),
    or 1 with ``mgpt_hide_target`` (its authors' behavior-free [mask])."""
    return 1.0 if ctx.profile.mgpt_hide_target else 0.0


def mgpt_recipe(ctx: Context) -> Context:
    """The run M-GPT trains in: the Cloze recipe ``mgpt_recipe`` names, or the profile's own."""
    recipe = ctx.profile.mgpt_recipe
    return ctx if recipe == "profile" else ctx.replace(**RECIPES[recipe])


M_GPT = ModelSpec("M-GPT", "mgpt", MGPT,
                  lambda ctx: (ctx.profile.config(MGPTConfig, **dims(ctx)),),
                  lambda ctx: cloze_batches(ctx, sigma=mgpt_sigma(ctx)),
                  lambda ctx: {**cloze_settings(ctx, sigma=mgpt_sigma(ctx)),
                               "max_len": ctx.profile.max_len},
                  adjust=mgpt_recipe, paper=True, settings=MGPTSettings, family=MULTI)

MISSL_SPEC = ModelSpec("MISSL", "missl", MISSL,
                       lambda ctx: (ctx.profile.config(MISSLConfig, **dims(ctx)),),
                       next_item_batches, next_item_settings, paper=True, settings=MISSLSettings,
                       family=MULTI)

# The trained baselines, in the comparison's order (Table 3's BERT4Rec, MB-STR, DiffuRec and
# our additions, then Table 3's other baselines in its order).
BASELINES: dict[str, ModelSpec] = {spec.name: spec for spec in (
    SASREC, BERT4REC, GRU4REC, BEHAVIOR_SASREC, MB_STR, DIFFUREC, MBGCN_SPEC, MB_GMN, PBAT_SPEC,
    MISSL_SPEC, M_GPT)}


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
