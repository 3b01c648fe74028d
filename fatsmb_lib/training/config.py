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
from ..models.denoiser import DenoiserConfig
from ..models.diffurec import DiffuRecConfig
from ..models.diffusion import DiffusionConfig
from ..models.encoder import EncoderConfig
from ..models.gru4rec import GRU4RecConfig
from ..models.mbstr import MBSTRConfig
from .train import TrainConfig

STAGES = ("stage1", "baseline", "stage2", "stage3")
HEADLINE_PROFILE = "full"  # the profile of the README's headline table and of compare's default


@dataclass(frozen=True)
class Profile:
    """Every hyperparameter of a run, and the only place any of them has a default.

    Flat, so that papermill parameters and ``open_run(**overrides)`` map onto fields one to
    one. The component configs are built from it by :meth:`encoder_config`,
    :meth:`diffusion_config`, :meth:`denoiser_config` and :meth:`train_config`; they carry no
    defaults of their own.
    """

    name: str
    dataset: str                      # the dataset this profile is meant for; get_profile
                                      # sets the one a run uses
    # data (Section 4.1.1) and encoder (Section 3.1)
    max_users: int | None = None      # a run uses at most this many users (a fixed sample;
                                      # None: all), ...
    max_history: int | None = None    # ... each with at most this many most recent
                                      # interactions (None: all): smoke's bound on any data
    max_len: int = 50                 # L
    d_model: int = 64                 # d
    n_heads: int = 2                  # h
    n_layers: int = 2                 # l
    dropout: float = 0.1
    position: str = "barope"          # ape | rope | barope (Table 4)
    rope_base: float = 10000.0        # base of θ_i (Eq. 11)
    # the Cloze task (stage 1 and BERT4Rec)
    rho: float = 0.2                  # item mask probability ρ (Fig. 8a: small is best)
    sigma: float = 0.2                # behavior mask probability σ (Fig. 8b: small is best)
    last_only_prob: float = 0.0       # share of Cloze rows masking only their last item (BERT4Rec)
    window_stride: int | None = None  # Cloze windows end every this many training items
                                      # (None: every L items, non-overlapping; 1: every prefix)
    # latent diffusion (Section 3.2) and denoiser (Section 3.3)
    T: int = 200
    stride: int = 20                  # Δt
    omega: float = 1.0                # ω, guidance strength (Eq. 17)
    eta: float = 0.0                  # DDIM stochasticity; 0 = deterministic (Eq. 5)
    schedule: str = "exp"             # the authors' VP schedule; see notebook 03
    prediction: str = "x0"            # x0 | eps (the paper, Eq. 16); x0 measured better on
                                      # ml100k validation (notebook 03, compare report)
    p_uncond: float = 0.2             # classifier-free guidance drop rate
    diffusion_target: str = "z_b"     # z_b (the paper) | offset: z_b − z_∅ (notebook 03)
    latent_scaling: str = "none"      # none (the paper) | standard: per-dimension z-scores
    stage2_source: str = "prefix"     # prefix | cloze: where stage 2's (z_b, z_∅) pairs come from
    prefixes_per_user: int | None = None  # stages 2-3 train on each user's most recent
                                          # training prefixes (None: all of them)
    denoiser: str = "mcgln"           # mlp | adaln | mcgln (Table 4)
    n_denoiser_layers: int = 2
    n_shared: int = 2                 # m_s
    n_private: int = 1                # m_p
    denoiser_hidden_mult: int = 4     # expert / MLP width = this × d
    denoiser_dropout: float = 0.0
    # the paper's peers (Table 3), at their authors' settings where this profile has no say
    gru4rec_lr: float = 5e-3          # GRU4Rec stalls at 2e-3 on ml100k (valid 0.033 vs 0.083)
    mbstr_buckets: int = 32           # MB-STR relative-distance buckets ...
    mbstr_max_distance: int = 40      # ... up to this distance (its authors' values)
    mbstr_shared: int = 3             # MB-STR prediction head: shared experts
    mbstr_private: int = 1            # ... and experts per behavior
    mbstr_recipe: str = "paper"       # MB-STR's Cloze recipe (config.RECIPES): its authors'
                                      # windows; every prefix holds ~45x their rows, about 9 min
                                      # per epoch at MB-STR's speed on this CPU
    diffurec_T: int = 32              # DiffuRec's diffusion steps (its authors' value)
    diffurec_schedule: str = "linear"
    diffurec_stride: int = 4          # DDIM jump at inference: T / stride approximator calls
    diffurec_lambda: float = 0.001    # δ of λ ~ N(δ, δ²), its authors' value
    # optimisation (Section 4.1.4)
    lr: float = 2e-3
    weight_decay: float = 0.01
    batch_size: int = 256
    stage2_batch_size: int | None = None  # the denoiser's batch (None: ``batch_size``). Its
                                          # rows are two latents, 2 MFLOP each: at 256 rows per
                                          # step the per-operation overhead dominates. 1,024 ties
                                          # with 256 on validation (3 seeds, default and full)
    grad_clip: float = 1.0            # max gradient norm; <= 0 disables clipping
    warmup_epochs: int = 0            # linear learning-rate warm-up (epochs)
    lr_decay: str = "none"            # none | cosine (to 0 at the stage's last epoch)
    precision: str = "fp32"           # fp32 | bf16: matmuls of training forward passes (bf16:
                                      # 2.2x stage-1 speed, validation 0.0520 vs 0.0532 on 2 seeds;
                                      # evaluation always runs in fp32, see fatsmb_lib.support.precision)
    stage1_precision: str | None = None   # the Cloze models' (MBAE, BERT4Rec) precision (None:
                                          # ``precision``); bf16 pays there, not in stage 2.
                                          # bf16 under ``full``: validation ties on 3 seeds,
                                          # BERT4Rec's test NDCG@10 13% lower (README, Speed)
    monitor: str = "NDCG@10"          # validation metric for early stopping and selection
    eval_every: int = 1               # validate every this many epochs
    stage1_epochs: int = 200
    stage2_epochs: int = 100
    stage3_epochs: int = 30
    baseline_epochs: int = 200
    patience: int = 10
    baseline_patience: int | None = None  # the baselines' patience (None: ``patience``); their
                                          # validation curves are noisy and still climb late
    min_epochs: int = 1               # no early stop before this epoch (stage 1, baselines):
                                      # Cloze models plateau for many epochs before improving

    @property
    def stage2_batch(self) -> int:
        """Rows per denoiser step: ``stage2_batch_size``, or ``batch_size`` when it is None."""
        return self.stage2_batch_size or self.batch_size

    def replace(self, **changes) -> "Profile":
        """A copy with some fields changed (unknown names raise TypeError naming them)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"Profile has no field(s) {unknown}; see fatsmb_lib.training.config.Profile")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def encoder_config(self, n_items: int, n_behaviors: int) -> EncoderConfig:
        """The MBAE's encoder (baselines switch behaviors/positions/causality off themselves)."""
        return EncoderConfig(n_items=n_items, n_behaviors=n_behaviors, d_model=self.d_model,
                             n_heads=self.n_heads, n_layers=self.n_layers, dropout=self.dropout,
                             max_len=self.max_len, position=self.position,
                             rope_base=self.rope_base)

    def diffusion_config(self) -> DiffusionConfig:
        return DiffusionConfig(T=self.T, schedule=self.schedule, stride=self.stride,
                               eta=self.eta, prediction=self.prediction,
                               p_uncond=self.p_uncond, omega=self.omega)

    def denoiser_config(self, n_behaviors: int) -> DenoiserConfig:
        return DenoiserConfig(denoiser=self.denoiser, d_model=self.d_model,
                              n_denoiser_layers=self.n_denoiser_layers, n_behaviors=n_behaviors,
                              n_shared=self.n_shared, n_private=self.n_private,
                              denoiser_hidden_mult=self.denoiser_hidden_mult,
                              denoiser_dropout=self.denoiser_dropout)

    def gru4rec_config(self, n_items: int) -> GRU4RecConfig:
        return GRU4RecConfig(n_items=n_items, d_model=self.d_model, dropout=self.dropout)

    def mbstr_config(self, n_items: int, n_behaviors: int) -> MBSTRConfig:
        return MBSTRConfig(n_items=n_items, n_behaviors=n_behaviors, d_model=self.d_model,
                           n_heads=self.n_heads, n_layers=self.n_layers, dropout=self.dropout,
                           mbstr_buckets=self.mbstr_buckets,
                           mbstr_max_distance=self.mbstr_max_distance,
                           mbstr_shared=self.mbstr_shared, mbstr_private=self.mbstr_private)

    def diffurec_config(self) -> DiffuRecConfig:
        return DiffuRecConfig(diffurec_T=self.diffurec_T, diffurec_schedule=self.diffurec_schedule,
                              diffurec_stride=self.diffurec_stride, eta=self.eta,
                              diffurec_lambda=self.diffurec_lambda)

    def train_config(self, stage: str, seed: int) -> TrainConfig:
        """``fit``'s settings for ``stage`` = "stage1" | "baseline" | "stage2" | "stage3".

        Stages 1 and the baselines keep training at least ``min_epochs``; stages 2-3 may stop
        as soon as their patience runs out.
        """
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        epochs = {"stage1": self.stage1_epochs, "baseline": self.baseline_epochs,
                  "stage2": self.stage2_epochs, "stage3": self.stage3_epochs}[stage]
        min_epochs = self.min_epochs if stage in ("stage1", "baseline") else 1
        patience = self.patience
        if stage == "baseline" and self.baseline_patience is not None:
            patience = self.baseline_patience
        precision = self.precision
        if stage == "stage1" and self.stage1_precision is not None:
            precision = self.stage1_precision
        return TrainConfig(lr=self.lr, weight_decay=self.weight_decay, max_epochs=epochs,
                           patience=patience, min_epochs=min_epochs,
                           grad_clip=self.grad_clip, monitor=self.monitor, seed=seed,
                           eval_every=self.eval_every, warmup_epochs=self.warmup_epochs,
                           decay=self.lr_decay, precision=precision)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke", dataset="synthetic-tiny", d_model=32, max_len=20,
        stage1_epochs=30, stage2_epochs=10, stage3_epochs=4, baseline_epochs=30, patience=10,
        batch_size=128, T=50, stride=10,
        max_users=500, max_history=200, prefixes_per_user=40,  # a quick look at any data
    ),
    "default": Profile(
        name="default", dataset="ml100k", prefixes_per_user=20,
        window_stride=1, last_only_prob=0.5, diffusion_target="offset", stage2_batch_size=1024,
        stage1_epochs=4, stage2_epochs=12, stage3_epochs=6, baseline_epochs=40, patience=8,
        min_epochs=30,
    ),
    "full": Profile(
        name="full", dataset="ml100k", prefixes_per_user=20,
        window_stride=1, last_only_prob=0.5, diffusion_target="offset",
        stage1_epochs=15, stage2_epochs=12, stage3_epochs=6, baseline_epochs=100, patience=8,
        baseline_patience=20, min_epochs=30,
    ),
    "paper": Profile(
        name="paper", dataset="yelp",
        stage1_epochs=100, stage2_epochs=100, stage3_epochs=100, baseline_epochs=100, patience=10,
        min_epochs=30,
    ),
}


# Named bundles of Cloze-training fields (``open_run(recipe=...)``). The paper trains on
# non-overlapping windows with random Cloze masks (Sec. 3.1, Eq. 14); the study behind any other
# recipe is ``python -m fatsmb_lib.studies.recipes``.
RECIPES: dict[str, dict] = {
    # with its budget: an epoch of the paper's windows holds about 2,400 rows on ml100k (50
    # epochs: the earlier `default` profile's); one of a window at every item about 98,000
    "paper": dict(window_stride=None, last_only_prob=0.0, warmup_epochs=0, lr_decay="none",
                  stage1_epochs=50),
}


def get_profile(name: str, dataset: str | None = None, data_dir: str | Path = "data") -> Profile:
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


def project_root(start: Path | None = None) -> Path:
    """The checkout's root: the first folder upwards holding this project's pyproject.toml.

    Notebooks run with their own folder as the working directory (JupyterLab, nbval) while
    papermill runs them from the caller's; resolving every path from here makes both work.
    """
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and 'name = "fatsmb_lib"' in pyproject.read_text():
            return folder
    # this file is <checkout>/fatsmb_lib/training/config.py
    package_parent = Path(__file__).resolve().parents[2]
    if (package_parent / "pyproject.toml").is_file():
        return package_parent
    raise FileNotFoundError(
        f"no fatsmb_lib checkout found above {here}: run from inside the repository"
    )


def default_run_dir(dataset: str, profile: str) -> Path:
    """Scratch folder for interactive and nbval runs (git-ignored): runs/<dataset>-<profile>."""
    return project_root() / "runs" / f"{dataset}-{profile}"
