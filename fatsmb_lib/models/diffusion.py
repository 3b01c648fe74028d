"""Latent preference diffusion: noise schedules, forward noising, DDIM sampling with
classifier-free guidance (paper Section 2.2, Eqs. 1-6; Section 3.2, Eqs. 15-17; Algorithms 1-2).

The sampler lives here; the network ε_θ lives in ``denoiser.py``. Any callable
``denoiser(z_t, t, z_null, behavior) -> (B, D)`` works, so the tests and notebook 03 plug in
:func:`oracle_denoiser`, the perfect network for a known z_0, to check that DDIM is exact.

Symbol map (code ↔ paper)::

    betas[t]                     ↔ β_t            forward-process variance (Eq. 1)
    alphas[t]                    ↔ α_t = 1 − β_t
    alpha_bar[t]                 ↔ ᾱ_t = ∏_{s≤t} α_s
    sqrt_alpha_bar[t]            ↔ sqrt(ᾱ_t)
    sqrt_one_minus_alpha_bar[t]  ↔ sqrt(1 − ᾱ_t)
    z_b, z0                      ↔ z_0^b = z_b    behavior-specific latent (the target)
    z_t                          ↔ z_t^b          noised latent (Eq. 15)
    z_null                       ↔ z_∅            behavior-agnostic latent (the condition)
    behavior                     ↔ b              target behavior, 0 ↔ ∅ (null condition)
    eps                          ↔ ε, ε_θ         noise / predicted noise
    x0                           ↔ x̂_0            predicted clean latent
    omega                        ↔ ω              guidance weight (Eq. 17)
    stride                       ↔ Δt             DDIM jump between sampled timesteps
    eta                          ↔ η              DDIM stochasticity (0 = deterministic, Eq. 5)
    p_uncond                     ↔ p = 0.2        probability of dropping b to ∅ in training

Shapes: B batch (users), D latent width. Timesteps are integer indices t ∈ {0, …, T−1}.

NOTE: the paper counts t = 1..T; index t here is the paper's t+1 (ᾱ at index 0 already has one
step of noise), as in the authors' code.
NOTE: Eq. 15 (and Eq. 5) print α_t where the cumulative product ᾱ_t is meant; Eq. 1 with the
reparameterisation trick gives z_t = sqrt(ᾱ_t) z_0 + sqrt(1 − ᾱ_t) ε, which is what we implement.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

Denoiser = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]
"""ε_θ(z_t, t, z_∅, b): (B, D), (B,) long, (B, D), (B,) long -> (B, D)."""

SCHEDULES = ("linear", "cosine", "exp")
PREDICTIONS = ("eps", "x0")
SAMPLE_AVERAGES = ("scores", "latents")  # what FatsMB averages over its K samples


# ----------------------------------------------------------------------------- schedules


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """DDPM's linear β schedule, endpoints rescaled by 1000/T (improved DDPM, Nichol & Dhariwal).

    β_t = linspace(beta_start·1000/T, beta_end·1000/T, T). The rescaling keeps the total noise
    ∑β (hence ᾱ_{T−1} ≈ 4e−5) the same as DDPM's 1000-step schedule for any T; unscaled, T = 200
    would end at ᾱ ≈ 0.13, far from the N(0, I) the sampler starts from.
    """
    scale = 1000.0 / T
    betas = np.linspace(beta_start * scale, beta_end * scale, T, dtype=np.float64)
    return torch.from_numpy(betas).float()


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Cosine schedule (improved DDPM): ᾱ(u) = f(u)/f(0), f(u) = cos²((u/T + s)/(1 + s)·π/2).

    β_t = min(1 − ᾱ(t+1)/ᾱ(t), max_beta) for t = 0..T−1; max_beta avoids β = 1 at the end.
    """
    u = np.arange(T + 1, dtype=np.float64)
    f = np.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    betas = np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], max_beta)
    return torch.from_numpy(betas).float()


def exp_betas(T: int, beta_min: float = 0.1, beta_max: float = 10.0) -> Tensor:
    """VP-SDE style schedule of the authors' released code (taken from DreamRec).

    β_t = 1 − exp(−β_min/T − x_t·(β_max − β_min)/(2T²)), with x_t = linspace(1, 2T+1, T).

    NOTE: discretising the VP-SDE exactly would use the midpoints x_t = 2t − 1 (1, 3, …, 2T−1);
    the authors' code spaces T values evenly from 1 to 2T+1 (step 2T/(T−1)), and we match it.
    """
    x = np.linspace(1.0, 2.0 * T + 1.0, T, dtype=np.float64)
    betas = 1.0 - np.exp(-beta_min / T - x * (beta_max - beta_min) / (2.0 * T * T))
    return torch.from_numpy(betas).float()


_SCHEDULE_FNS = {"linear": linear_betas, "cosine": cosine_betas, "exp": exp_betas}


def extract(a: Tensor, t: Tensor, shape: torch.Size | tuple[int, ...]) -> Tensor:
    """Pick a[t] per sample and reshape to (B, 1, …, 1) so it broadcasts against ``shape``."""
    B = t.shape[0]
    return a[t].reshape(B, *((1,) * (len(shape) - 1)))


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True, kw_only=True)
class DiffusionConfig:
    """Latent diffusion hyperparameters, built by ``Profile.config`` (paper: T = 200,
    Δt = 20, p = 0.2). ``stride``, ``eta`` and ``omega`` act only when sampling, and so do
    ``n_samples`` (K) and ``sample_average``, which ``FatsMB.score_all`` reads: it scores with
    the mean of K samples' scores ("scores") or decodes the mean of K latents ("latents").

    NOTE: the paper does not name its β schedule; the profiles use the authors' ``"exp"``. It
    ends at ᾱ_{T−1} ≈ 6e−3, where ``"linear"`` ends at 3e−5 and ``"cosine"`` at 6e−8; with
    ε-prediction, x̂_0 = (z_t − sqrt(1−ᾱ_t) ε̂)/sqrt(ᾱ_t) multiplies ε̂'s error at the first
    sampling step by 13, 180 and 4000 respectively. On the toy task of tests/test_denoiser.py,
    ε-prediction samples land 1.35 from z_b with "exp" but 6.6 with "linear" (z_∅: 5.3).
    NOTE: the paper trains ε-prediction (Eq. 16); the authors' code regresses x̂_0 (with a
    smooth-L1 loss). Both are first-class here (``prediction="eps"|"x0"``, MSE in both cases).
    """

    T: int
    schedule: str  # "exp" | "linear" | "cosine"
    stride: int  # Δt
    eta: float  # η; 0 = deterministic DDIM (Eq. 5)
    prediction: str  # "eps" (Eq. 16) | "x0"
    p_uncond: float  # p, classifier-free guidance dropout
    omega: float  # ω in Eq. 17
    n_samples: int  # K latents drawn per user and behavior at inference
    sample_average: str  # "scores" | "latents": what of the K samples is averaged

    def __post_init__(self) -> None:
        if self.n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {self.n_samples}")
        if self.sample_average not in SAMPLE_AVERAGES:
            raise ValueError(f"sample_average must be one of {SAMPLE_AVERAGES}, got {self.sample_average!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {self.prediction!r}")
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1 (1 = every timestep), got {self.stride}")
        if not 0.0 <= self.p_uncond <= 1.0:
            raise ValueError(f"p_uncond is a probability in [0, 1], got {self.p_uncond}")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1] (0 = deterministic DDIM), got {self.eta}")


# ----------------------------------------------------------------------------- the process


class LatentDiffusion(nn.Module):
    """Forward process, training loss and guided DDIM sampler (Eqs. 15-17, Algorithms 1-2).

    Holds no learnable parameters: only the schedule buffers ``betas``, ``alphas``,
    ``alpha_bar``, ``sqrt_alpha_bar``, ``sqrt_one_minus_alpha_bar`` (all (T,)), so
    ``.to(device)`` / ``.double()`` move and cast them with the model. The denoiser is passed in.
    """

    def __init__(self, cfg: DiffusionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        betas = _SCHEDULE_FNS[self.cfg.schedule](self.cfg.T).double()
        alphas = 1.0 - betas
        alpha_bar = torch.cumprod(alphas, dim=0)
        self.register_buffer("betas", betas.float())
        self.register_buffer("alphas", alphas.float())
        self.register_buffer("alpha_bar", alpha_bar.float())
        self.register_buffer("sqrt_alpha_bar", alpha_bar.sqrt().float())
        self.register_buffer("sqrt_one_minus_alpha_bar", (1.0 - alpha_bar).sqrt().float())

    @property
    def T(self) -> int:
        return self.cfg.T

    def q_sample(self, z0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Eq. 15: z_t = sqrt(ᾱ_t)·z_0 + sqrt(1 − ᾱ_t)·ε.  z0, noise (B, D); t (B,) long."""
        return (extract(self.sqrt_alpha_bar, t, z0.shape) * z0
                + extract(self.sqrt_one_minus_alpha_bar, t, z0.shape) * noise)

    def training_loss(self, denoiser: Denoiser, z_b: Tensor, z_null: Tensor, behavior: Tensor,
                      generator: torch.Generator | None = None) -> Tensor:
        """Eq. 16 (Algorithm 1, lines 19-22) with classifier-free guidance dropout (Section 3.2).

        Draws, in this order from ``generator`` (which must live on z_b's device):
        t ~ Uniform{0..T−1} (B,), ε ~ N(0, I) (B, D), u ~ U[0, 1) (B,); b is set to ∅ (0)
        where u < p_uncond. Returns the mean squared error of the network output against ε
        (prediction="eps") or against z_b (prediction="x0").
        """
        B = z_b.shape[0]
        device = z_b.device
        t = torch.randint(0, self.T, (B,), generator=generator, device=device)
        noise = torch.randn(z_b.shape, generator=generator, device=device, dtype=z_b.dtype)
        drop = torch.rand(B, generator=generator, device=device) < self.cfg.p_uncond
        behavior = behavior.masked_fill(drop, 0)
        z_t = self.q_sample(z_b, t, noise)  # (B, D)
        out = denoiser(z_t, t, z_null, behavior)  # (B, D)
        target = noise if self.cfg.prediction == "eps" else z_b
        return F.mse_loss(out, target)

    def _eps_and_x0(self, out: Tensor, z_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Complete the network output into (ε̂, x̂_0) via z_t = sqrt(ᾱ_t) x̂_0 + sqrt(1−ᾱ_t) ε̂."""
        sqrt_ab = extract(self.sqrt_alpha_bar, t, z_t.shape)
        sqrt_1m_ab = extract(self.sqrt_one_minus_alpha_bar, t, z_t.shape)
        if self.cfg.prediction == "eps":
            return out, (z_t - sqrt_1m_ab * out) / sqrt_ab
        return (z_t - sqrt_ab * out) / sqrt_1m_ab, out

    def predict_eps_x0(self, denoiser: Denoiser, z_t: Tensor, t: Tensor, z_null: Tensor,
                       behavior: Tensor) -> tuple[Tensor, Tensor]:
        """One unguided call of the network; returns (ε̂, x̂_0), both (B, D)."""
        return self._eps_and_x0(denoiser(z_t, t, z_null, behavior), z_t, t)

    def guided_prediction(self, denoiser: Denoiser, z_t: Tensor, t: Tensor, z_null: Tensor,
                          behavior: Tensor, omega: float) -> tuple[Tensor, Tensor]:
        """Eq. 17: ε* = (1+ω)·ε_θ(z_t, t, z_∅, b) − ω·ε_θ(z_t, t, z_∅, ∅); returns (ε*, x̂_0*).

        The conditional and unconditional branches run as ONE denoiser call on a batch of 2B
        (the inputs stacked, the second half with b = ∅); ω = 0 needs only the conditional half.
        With x0-prediction the same combination is applied to the network's x̂_0: for a fixed
        z_t, ε = (z_t − sqrt(ᾱ_t) x̂_0)/sqrt(1 − ᾱ_t) is affine in x̂_0 and the weights (1+ω) and
        −ω sum to 1, so combining x̂_0's and then converting gives exactly ε*.
        """
        if omega == 0:
            return self.predict_eps_x0(denoiser, z_t, t, z_null, behavior)
        null = torch.zeros_like(behavior)
        out = denoiser(torch.cat([z_t, z_t]), torch.cat([t, t]),
                       torch.cat([z_null, z_null]), torch.cat([behavior, null]))  # (2B, D)
        cond, uncond = out.chunk(2)  # (B, D) each
        return self._eps_and_x0((1 + omega) * cond - omega * uncond, z_t, t)

    def ddim_step(self, z_t: Tensor, eps: Tensor, x0: Tensor, t: Tensor, t_prev: Tensor,
                  eta: float = 0.0, noise: Tensor | None = None) -> Tensor:
        """One DDIM jump t → t_prev (Eq. 5, generalised with η as in the DDIM paper).

            σ      = η · sqrt((1 − ᾱ_prev)/(1 − ᾱ_t)) · sqrt(1 − ᾱ_t/ᾱ_prev)
            z_prev = sqrt(ᾱ_prev)·x̂_0 + sqrt(1 − ᾱ_prev − σ²)·ε̂ + σ·noise

        with ᾱ_prev = 1 where t_prev < 0 (the final jump lands on x̂_0). η = 0 is Eq. 5.
        z_t, eps, x0, noise (B, D); t, t_prev (B,) long.
        """
        alpha_bar_t = extract(self.alpha_bar, t, z_t.shape)
        alpha_bar_prev = extract(F.pad(self.alpha_bar, (1, 0), value=1.0), t_prev + 1,
                                 z_t.shape)  # table shifted by one: index 0 holds ᾱ_{−1} = 1
        sigma = (eta * ((1 - alpha_bar_prev) / (1 - alpha_bar_t)).sqrt()
                 * (1 - alpha_bar_t / alpha_bar_prev).sqrt())
        # clamp: at η = 1 the variance 1 − ᾱ_prev − σ² is ≥ 0 exactly but can round below 0
        z_prev = (alpha_bar_prev.sqrt() * x0
                  + (1 - alpha_bar_prev - sigma**2).clamp(min=0).sqrt() * eps)
        if eta == 0:
            return z_prev
        if noise is None:
            raise ValueError("eta > 0 makes the DDIM step stochastic: pass noise ~ N(0, I)")
        return z_prev + sigma * noise

    def timesteps(self, stride: int | None = None) -> list[int]:
        """Sampled timesteps T−1, T−1−Δt, T−1−2Δt, … (all ≥ 0), i.e. ceil(T/Δt) steps (Δt ≥ T: one).

        The sampler jumps from each entry to the next and from the last entry to t_prev = −1
        (the clean latent). T = 200, Δt = 20 → [199, 179, …, 19] (10 denoiser evaluations).
        NOTE: the authors' code visits T−Δt, …, Δt, 0 and returns x̂_0 at t = 0; starting at
        T−1 begins from the noisiest state, where z_T ~ N(0, I) is the right marginal.
        """
        stride = self.cfg.stride if stride is None else stride
        if stride < 1:
            raise ValueError(f"stride must be >= 1 (1 = every timestep), got {stride}")
        return list(range(self.T - 1, -1, -stride))

    @torch.no_grad()
    def sample(self, denoiser: Denoiser, z_null: Tensor | None, behavior: Tensor | None,
               omega: float | None = None, stride: int | None = None, eta: float | None = None,
               generator: torch.Generator | None = None, return_trajectory: bool = False,
               z_T: Tensor | None = None) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Algorithm 2, lines 2-5: z_T ~ N(0, I), then guided DDIM steps down to z_0.

        z_null (B, D) and behavior (B,) condition every step (Eq. 17 with ``omega``);
        ``omega``, ``stride``, ``eta`` default to the config. Runs without gradients (stage 3
        trains only the decoder on the sampled z_0); put the denoiser in eval mode first.
        Returns z_0 (B, D), and with ``return_trajectory`` also the list [z_T, …, z_0] of
        ceil(T/Δt) + 1 latents (for the denoising-trajectory figure).

        ``z_T`` (B, D) starts the chain from a given latent instead of a draw shaped like z_null.
        A network conditioned on something else (DiffuRec's f_θ reads the history) passes
        ``z_null = behavior = None`` and its own z_T; it is then called as ``denoiser(z_t, t,
        None, None)``, unguided (ω = 0).
        """
        omega = self.cfg.omega if omega is None else omega
        eta = self.cfg.eta if eta is None else eta
        if omega != 0 and (z_null is None or behavior is None):
            raise ValueError(f"guidance (omega={omega}) needs the conditions z_null and behavior")
        if z_T is None:
            z_T = torch.randn(z_null.shape, generator=generator, device=z_null.device,
                              dtype=z_null.dtype)  # (B, D)
        z, B = z_T, z_T.shape[0]
        trajectory = [z]
        ts = self.timesteps(stride)
        for t, t_prev in zip(ts, ts[1:] + [-1]):
            t_batch = torch.full((B,), t, device=z.device, dtype=torch.long)
            t_prev_batch = torch.full((B,), t_prev, device=z.device, dtype=torch.long)
            eps, x0 = self.guided_prediction(denoiser, z, t_batch, z_null, behavior, omega)
            noise = (torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
                     if eta > 0 else None)
            z = self.ddim_step(z, eps, x0, t_batch, t_prev_batch, eta, noise)  # (B, D)
            trajectory.append(z)
        return (z, trajectory) if return_trajectory else z


def oracle_denoiser(diffusion: LatentDiffusion, z0: Tensor) -> Denoiser:
    """The perfect network for a known z_0 (B0, D), in ``diffusion``'s parameterisation.

    prediction="eps": the ε that explains z_t exactly, ε = (z_t − sqrt(ᾱ_t)·z_0)/sqrt(1 − ᾱ_t)
    (Eq. 15 solved for ε); prediction="x0": z_0 itself. Either way ``_eps_and_x0`` completes
    the pair to (ε, z_0), so DDIM (Eq. 5, any Δt and η) lands on z_0 from any z_T: the
    sampler's exactness check (notebook 03, tests/test_diffusion.py). An oracle of the other
    parameterisation does not: its ε read as x̂_0 lands as far from z_0 as noise is.

    It ignores z_∅ and b, so guidance (Eq. 17) leaves it unchanged for every ω; its rows repeat
    z0 to the batch it is called with (the guided sampler stacks 2·B0 rows).
    """
    def denoiser(z_t: Tensor, t: Tensor, z_null: Tensor, behavior: Tensor) -> Tensor:
        z = z0.repeat(z_t.shape[0] // z0.shape[0], 1)  # (B, D)
        if diffusion.cfg.prediction == "x0":
            return z
        return ((z_t - extract(diffusion.sqrt_alpha_bar, t, z.shape) * z)
                / extract(diffusion.sqrt_one_minus_alpha_bar, t, z.shape))
    return denoiser
