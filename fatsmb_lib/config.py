"""Run profiles (papermill's ``profile`` parameter) and the project's folders.

A profile fixes the cost of a run (epochs, patience, seeds) and the paper's hyperparameters
(Section 4.1.4): AdamW, lr 2e-3, batch 256 (64 for IJCAI), d = 64, L = 50, dropout 0.1,
2 encoder layers, 2 MCGLN layers, T = 200, Δt = 20.

- ``smoke``: tiny synthetic data, a few epochs — for tests, seconds per notebook.
- ``default``: ml100k on CPU, the whole notebook sequence in about 10 minutes on 2 cores:
  epochs are capped (stage 1: 50, baselines: 40, stage 2: 12, stage 3: 6) and stages 2-3 use
  each user's 20 most recent training prefixes. Models are a little under-trained; the
  multi-seed comparison (``python -m fatsmb_lib.compare``) uses the same caps.
- ``paper``: the paper's schedule for Yelp / Retail / IJCAI on a GPU.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Profile:
    """Every knob a notebook run needs; notebooks read these instead of literals."""

    name: str
    dataset: str                      # the dataset this profile is meant for
    # data (Section 4.1.1) and encoder (Section 3.1)
    max_len: int = 50                 # L
    d_model: int = 64                 # d
    n_heads: int = 2                  # h
    n_layers: int = 2                 # l
    dropout: float = 0.1
    position: str = "barope"          # ape | rope | barope (Table 4)
    rho: float = 0.2                  # item mask probability ρ (Fig. 8a: small is best)
    sigma: float = 0.2                # behavior mask probability σ (Fig. 8b: small is best)
    last_only_prob: float = 0.0       # share of Cloze rows masking only their last item (BERT4Rec)
    # latent diffusion (Section 3.2) and denoiser (Section 3.3)
    T: int = 200
    stride: int = 20                  # Δt
    omega: float = 1.0                # ω, guidance strength (Eq. 17)
    eta: float = 0.0                  # DDIM stochasticity; 0 = deterministic (Eq. 5)
    schedule: str = "exp"             # the authors' VP schedule; see notebook 03
    prediction: str = "x0"            # x0 | eps (the paper, Eq. 16); x0 measured better on
                                      # ml100k validation (notebook 03, compare report)
    p_uncond: float = 0.2             # classifier-free guidance drop rate
    prefixes_per_user: int | None = None  # stages 2-3 train on each user's most recent
                                          # training prefixes (None: all of them)
    denoiser: str = "mcgln"           # mlp | adaln | mcgln (Table 4)
    n_denoiser_layers: int = 2
    n_shared: int = 2                 # m_s
    n_private: int = 1                # m_p
    # optimisation (Section 4.1.4)
    lr: float = 2e-3
    weight_decay: float = 0.01
    batch_size: int = 256
    stage1_epochs: int = 200
    stage2_epochs: int = 100
    stage3_epochs: int = 30
    baseline_epochs: int = 200
    patience: int = 10
    min_epochs: int = 1               # no early stop before this epoch (stage 1, baselines):
                                      # Cloze models plateau for many epochs before improving
    seeds: tuple[int, ...] = (0,)

    def replace(self, **changes) -> "Profile":
        """A copy with some fields changed (unknown names raise TypeError)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke", dataset="synthetic-tiny", d_model=32, max_len=20,
        stage1_epochs=30, stage2_epochs=10, stage3_epochs=4, baseline_epochs=30, patience=10,
        batch_size=128, T=50, stride=10,
    ),
    "default": Profile(
        name="default", dataset="ml100k", prefixes_per_user=20,
        stage1_epochs=50, stage2_epochs=12, stage3_epochs=6, baseline_epochs=40, patience=8,
        min_epochs=30,
    ),
    "paper": Profile(
        name="paper", dataset="yelp",
        stage1_epochs=100, stage2_epochs=100, stage3_epochs=100, baseline_epochs=100, patience=10,
        min_epochs=30,
    ),
}


def get_profile(name: str, dataset: str | None = None) -> Profile:
    """The named profile, adjusted for ``dataset`` (IJCAI uses batch 64, Section 4.1.4)."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}: choose one of {sorted(PROFILES)}")
    profile = PROFILES[name]
    if dataset == "ijcai":
        profile = profile.replace(batch_size=64)
    return profile


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
    package_parent = Path(__file__).resolve().parents[1]
    if (package_parent / "pyproject.toml").is_file():
        return package_parent
    raise FileNotFoundError(
        f"no fatsmb_lib checkout found above {here}: run from inside the repository"
    )


def default_run_dir(dataset: str, profile: str) -> Path:
    """Scratch folder for interactive and nbval runs (git-ignored): runs/<dataset>-<profile>."""
    return project_root() / "runs" / f"{dataset}-{profile}"
