"""Run profiles (papermill's ``profile`` parameter) and the project's folders.

A profile fixes the cost of a run (epochs, patience, seeds) and the paper's hyperparameters
(Section 4.1.4): AdamW, lr 2e-3, batch 256 (64 for IJCAI), d = 64, L = 50, dropout 0.1,
2 encoder layers, 2 MCGLN layers, T = 200, Δt = 20.

- ``smoke``: tiny synthetic data, a few epochs — for tests, seconds per notebook. Bounded on
  any dataset: at most 500 users (a fixed sample), each with their 200 most recent
  interactions, and stages 2-3 on each user's 40 most recent training prefixes, so at most
  100,000 interactions, 5,000 Cloze windows of L = 20 per epoch and 20,000 diffused rows
  (synthetic-tiny, 200 users of at most 40 interactions, is within every cap).
- ``default``: ml100k on CPU, the whole notebook sequence within 10 minutes on 2 cores: the
  recipe of ``full`` for 4 epochs of the Cloze models instead of 15, other epochs capped
  (baselines: 40, stage 2: 12, stage 3: 6), stages 2-3 on each user's 20 most recent training
  prefixes, the denoiser on 1,024-row batches. Its models are under-trained against ``full``'s.
- ``full``: ml100k on CPU, trained to convergence with the recipe chosen by
  ``python -m fatsmb_lib.studies.recipes`` (a Cloze window ending at every training item, half the rows
  masking only their last item, 15 epochs); stages 2-3 diffuse the offset z_b − z_∅. The README's
  headline table and ``python -m fatsmb_lib.studies.compare --profile full`` use it.
- ``paper``: the paper's schedule for Yelp / Retail / IJCAI on a GPU.

The Cloze models (the MBAE, BERT4Rec) share stage 1's epoch budget; the other baselines use
``baseline_epochs``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ..data.datasets import profile_changes
from .peers import BASELINES
from .train import PAPER_LR, TrainConfig

STAGES = ("stage1", "baseline", "stage2", "stage3")
HEADLINE_PROFILE = "full"  # the profile of the README's headline table and of compare's default


@dataclass(frozen=True)
class DataSettings:
    """The data a run sees (Section 4.1.1) and the Cloze task's views of it (Section 3.1)."""

    max_users: int | None = None      # a run uses at most this many users (a fixed sample;
                                      # None: all), ...
    max_history: int | None = None    # ... each with at most this many most recent
                                      # interactions (None: all): smoke's bound on any data
    max_len: int = 50                 # L
    rho: float = 0.2                  # item mask probability ρ (Fig. 8a)
    sigma: float = 0.2                # behavior mask probability σ (Fig. 8b)
    last_only_prob: float = 0.0       # share of Cloze rows masking only their last item (BERT4Rec)
    window_stride: int | None = None  # Cloze windows end every this many training items
                                      # (None: every L items, non-overlapping; 1: every prefix)


@dataclass(frozen=True)
class EncoderSettings:
    """The MBAE's encoder (Section 3.1; ``models.encoder.EncoderConfig``)."""

    d_model: int = 64                 # d
    n_heads: int = 2                  # h
    n_layers: int = 2                 # l
    dropout: float = 0.1
    position: str = "barope"          # ape | rope | barope (Table 4)
    rope_base: float = 10000.0        # base of θ_i (Eq. 11)
    behavior_query: bool = False      # a departure: each position's behavior also added at the
                                      # output, h + MLP([h; e_b]) (encoder.BehaviorQuery)


@dataclass(frozen=True)
class DiffusionSettings:
    """Latent diffusion (Section 3.2; ``models.diffusion.DiffusionConfig``) and the latents
    stages 2-3 train on."""

    T: int = 200
    stride: int = 20                  # Δt, the DDIM jump at inference
    omega: float = 1.0                # ω, guidance strength (Eq. 17)
    eta: float = 0.0                  # DDIM stochasticity; 0 = deterministic (Eq. 5)
    n_samples: int = 1                # K latents per user and behavior at inference (paper: 1)
    sample_average: str = "scores"    # scores | latents: what of the K samples is averaged
    schedule: str = "exp"             # the authors' VP schedule; see notebook 03
    prediction: str = "x0"            # x0 | eps (the paper, Eq. 16); notebook 03 compares them
    p_uncond: float = 0.2             # classifier-free guidance drop rate
    diffusion_target: str = "z_b"     # z_b (the paper) | offset: z_b − z_∅ (notebook 03)
    latent_scaling: str = "none"      # none (the paper) | standard: per-dimension z-scores
    stage2_source: str = "prefix"     # prefix | cloze: where stage 2's (z_b, z_∅) pairs come from
    prefixes_per_user: int | None = None  # stages 2-3 train on each user's most recent
                                          # training prefixes (None: all of them)


@dataclass(frozen=True)
class DenoiserSettings:
    """The denoiser (Section 3.3; ``models.denoiser.DenoiserConfig``)."""

    denoiser: str = "mcgln"           # mlp | adaln | mcgln (Table 4)
    n_denoiser_layers: int = 2
    n_shared: int = 2                 # m_s
    n_private: int = 1                # m_p
    denoiser_hidden_mult: int = 4     # expert / MLP width = this × d
    denoiser_dropout: float = 0.0


@dataclass(frozen=True)
class TrainingSettings:
    """Optimisation (Section 4.1.4; ``train.TrainConfig``), per stage where stages differ."""

    lr: float = PAPER_LR
    weight_decay: float = 0.01
    batch_size: int = 256
    stage2_batch_size: int = 256      # the denoiser's rows per step (two latents each)
    grad_clip: float = 1.0            # max gradient norm; <= 0 disables clipping
    warmup_epochs: int = 0            # linear learning-rate warm-up (epochs)
    lr_decay: str = "none"            # none | cosine (to 0 at the stage's last epoch)
    precision: str = "fp32"           # fp32 | bf16: matmuls of the training forward passes of
                                      # stages 2-3 and the baselines (evaluation: always fp32)
    stage1_precision: str = "fp32"    # the same for the Cloze models (MBAE, BERT4Rec)
    monitor: str = "NDCG@10"          # validation metric for early stopping and selection
    eval_every: int = 1               # validate every this many epochs
    stage1_epochs: int = 200          # the Cloze models' budget (MBAE, BERT4Rec)
    stage2_epochs: int = 100
    stage3_epochs: int = 30
    stage3_keeps_stage2: bool = False  # stage 3's early stopping counts stage 2's decoder as
                                       # epoch 0, so stage 3 cannot end worse on validation
    baseline_epochs: int = 200        # the other baselines'
    patience: int = 10                # stages 1-3
    baseline_patience: int = 10       # the baselines other than BERT4Rec
    min_epochs: int = 1               # no early stop before this epoch (stage 1, baselines):
                                      # Cloze models plateau for many epochs before improving


# each registered baseline's own settings (``training.peers``), flat fields of Profile
PEER_SETTINGS = tuple(spec.settings for spec in BASELINES.values() if spec.settings is not None)


@dataclass(frozen=True, kw_only=True)
class Profile(DataSettings, EncoderSettings, DiffusionSettings, DenoiserSettings,
              TrainingSettings, *PEER_SETTINGS):
    """Every hyperparameter of a run, and the only place any of them has a default.

    Grouped by concern in the classes it inherits (data and recipe, encoder, diffusion,
    denoiser, training, each baseline's own in ``training.peers``), and flat, so that papermill
    parameters and ``open_run(**overrides)`` map onto fields one to one. Component configs use
    the same names: :meth:`config` builds any of them.
    """

    name: str
    dataset: str                      # the dataset this profile is meant for; get_profile
                                      # sets the one a run uses

    def replace(self, **changes) -> "Profile":
        """A copy with some fields changed (unknown names raise TypeError naming them)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"Profile has no field(s) {unknown}; "
                            "see fatsmb_lib.training.config.Profile")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def config(self, cls: type, **given):
        """The component config ``cls`` (a dataclass) from this profile's fields of the same
        names, and ``given`` (the data's sizes) for the fields it has that the profile has not.
        A field the profile has not, with a default of its own, keeps it (which model it is,
        e.g. ``EncoderConfig.causal``, not a hyperparameter)."""
        values, missing = {}, []
        for f in dataclasses.fields(cls):
            if f.name in given:
                values[f.name] = given[f.name]
            elif hasattr(self, f.name):
                values[f.name] = getattr(self, f.name)
            elif f.default is dataclasses.MISSING:
                missing.append(f.name)
        if missing:
            raise TypeError(f"{cls.__name__} needs {missing}, which the profile has not: pass them")
        return cls(**values)

    def train_config(self, stage: str, seed: int) -> TrainConfig:
        """``fit``'s settings for ``stage`` = "stage1" | "baseline" | "stage2" | "stage3".

        Stages 1 and the baselines keep training at least ``min_epochs``; stages 2-3 may stop
        as soon as their patience runs out.
        """
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        epochs = {"stage1": self.stage1_epochs, "baseline": self.baseline_epochs,
                  "stage2": self.stage2_epochs, "stage3": self.stage3_epochs}[stage]
        return TrainConfig(lr=self.lr, weight_decay=self.weight_decay, max_epochs=epochs,
                           patience=(self.baseline_patience if stage == "baseline"
                                     else self.patience),
                           min_epochs=self.min_epochs if stage in ("stage1", "baseline") else 1,
                           grad_clip=self.grad_clip, monitor=self.monitor, seed=seed,
                           eval_every=self.eval_every, warmup_epochs=self.warmup_epochs,
                           lr_decay=self.lr_decay,
                           precision=self.stage1_precision if stage == "stage1" else self.precision)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke", dataset="synthetic-tiny", d_model=32, max_len=20,
        stage1_epochs=30, stage2_epochs=10, stage3_epochs=4, baseline_epochs=30, patience=10,
        batch_size=128, stage2_batch_size=128, T=50, stride=10,
        max_users=500, max_history=200, prefixes_per_user=40,  # a quick look at any data
    ),
    "default": Profile(
        name="default", dataset="ml100k", prefixes_per_user=20,
        window_stride=1, last_only_prob=0.5, diffusion_target="offset", stage2_batch_size=1024,
        stage1_epochs=4, stage2_epochs=12, stage3_epochs=6, baseline_epochs=40, patience=8,
        baseline_patience=8, min_epochs=30,
        # stage3_keeps_stage2 stays off: notebook 05's studies' ledgers were made without it
    ),
    "full": Profile(
        name="full", dataset="ml100k", prefixes_per_user=20,
        window_stride=1, last_only_prob=0.5, diffusion_target="offset",
        stage1_epochs=15, stage2_epochs=12, stage3_epochs=6, baseline_epochs=100, patience=8,
        baseline_patience=20, min_epochs=30, stage3_keeps_stage2=True,
        # the validation search's choices (reports/ml100k/peer_search.md)
        missl_interests=8, mgpt_orders=2, mbgmn_layers=3, pbat_rho=0.3, mbgcn_lambda=0.1,
    ),
    "paper": Profile(
        name="paper", dataset="yelp",
        stage1_epochs=100, stage2_epochs=100, stage3_epochs=100, baseline_epochs=100, patience=10,
        min_epochs=30,
    ),
}


def get_profile(name: str, dataset: str | None = None,
                data_dir: str | Path | None = None) -> Profile:
    """The named profile, adjusted for ``dataset`` (``datasets.profile_changes``; a dataset
    registered in ``data_dir`` may change fields too)."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}: choose one of {sorted(PROFILES)}")
    profile = PROFILES[name]
    if not dataset:
        return profile
    changes = profile_changes(dataset, data_dir)
    try:
        return profile.replace(**{**changes, "dataset": dataset})
    except TypeError as exc:
        raise ValueError(f"dataset {dataset!r} changes profile fields that do not exist: {exc}") from None
