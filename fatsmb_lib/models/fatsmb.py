"""FatsMB: the MBAE encoder, latent preference diffusion and the MBAE decoder, end to end.

Algorithm 2 (inference), for a prefix batch whose last column is the [mask] item:

    z_∅ = E(S_u, [mask])                 # behavior-agnostic preference (behavior masked)
    z_0 = DDIM-CFG(z_T ~ N(0, I) | z_∅, b)  # behavior-specific preference (Eqs. 5, 17)
    scores = D(z_0)                      # decoder scored against all N items

Symbols: ``z_null`` ↔ z_∅, ``z_b`` ↔ z_b; ω, Δt, η are ``diffusion.cfg.omega``, ``.stride``,
``.eta``.

The three training stages (Algorithm 1) are three losses of this one model:
``MBAE.loss`` (stage 1, Cloze, Eq. 14), :meth:`FatsMB.diffusion_loss` (stage 2, Eq. 16) and
:meth:`FatsMB.loss` (stage 3: next-item cross-entropy on the decoded z_0, Algorithm 1 lines
23–28). Which parameters move in each stage is decided by the caller (``fatsmb_lib.training.stages``).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .diffusion import LatentDiffusion
from .encoder import MBAE

DRAW_SETTINGS = ("omega", "stride", "eta")  # how one latent is drawn (Eqs. 5, 17)
# act only when sampling: never retrain for them (stage 3 trains on single draws)
SAMPLER_SETTINGS = (*DRAW_SETTINGS, "n_samples", "sample_average")
DIFFUSION_TARGETS = ("z_b", "offset")
LATENT_SCALINGS = ("none", "standard")


class LatentSpace(nn.Module):
    """The coordinates the diffusion runs in, and the way back to the MBAE's latent space.

    The paper diffuses z_b itself (``target="z_b"``, ``scaling="none"``): x_0 = z_b, with z_∅
    as the condition. Two options, measured against it in notebook 03:

    - ``scaling="standard"``: diffusion assumes data of roughly unit variance (the forward
      process of Eq. 15 mixes x_0 with N(0, I)), while the MBAE's latents have a large shared
      mean and per-dimension spread far from 1. Standardise per dimension with the mean μ and
      standard deviation s of the training latents: x_0 = (z − μ)/s; the condition z_∅ is
      standardised with its own statistics.
    - ``target="offset"``: diffuse the behavior-specific part only, z_b − z_∅ (cosine of z_b
      and z_∅ is about 0.98 on ml100k: the offset is small next to the shared vector), and add
      z_∅ back after sampling. A sampler that predicts nothing then returns z_∅, not noise.

    Statistics are buffers: they travel with the model's state dict and its checkpoints.
    Shapes: (B, D) latents, (D,) statistics.
    """

    def __init__(self, d_model: int, target: str, scaling: str):
        super().__init__()
        if target not in DIFFUSION_TARGETS:
            raise ValueError(f"diffusion_target must be one of {DIFFUSION_TARGETS}, got {target!r}")
        if scaling not in LATENT_SCALINGS:
            raise ValueError(f"latent_scaling must be one of {LATENT_SCALINGS}, got {scaling!r}")
        self.target, self.scaling = target, scaling
        for name, value in (("mean", 0.0), ("std", 1.0), ("null_mean", 0.0), ("null_std", 1.0)):
            self.register_buffer(name, torch.full((d_model,), value))

    def _raw(self, z_b: torch.Tensor, z_null: torch.Tensor) -> torch.Tensor:
        return z_b - z_null if self.target == "offset" else z_b

    @torch.no_grad()
    def fit_(self, z_b: torch.Tensor, z_null: torch.Tensor) -> "LatentSpace":
        """Set μ and s from training latents (N, D) when ``scaling="standard"``."""
        if self.scaling == "standard":
            raw = self._raw(z_b, z_null)
            self.mean.copy_(raw.mean(0))
            self.std.copy_(raw.std(0).clamp(min=1e-6))
            self.null_mean.copy_(z_null.mean(0))
            self.null_std.copy_(z_null.std(0).clamp(min=1e-6))
        return self

    def encode(self, z_b: torch.Tensor, z_null: torch.Tensor) -> torch.Tensor:
        """x_0 (B, D), what the diffusion learns to generate."""
        return (self._raw(z_b, z_null) - self.mean) / self.std

    def condition(self, z_null: torch.Tensor) -> torch.Tensor:
        """The denoiser's primary condition (B, D) from z_∅."""
        return (z_null - self.null_mean) / self.null_std

    def decode(self, x_0: torch.Tensor, z_null: torch.Tensor) -> torch.Tensor:
        """Back to the MBAE's latent space: z_b (B, D) from a generated x_0."""
        raw = x_0 * self.std + self.mean
        return raw + z_null if self.target == "offset" else raw


class FatsMB(nn.Module):
    """Encoder + denoiser + decoder; the sampler's ω, Δt and η are those of ``diffusion.cfg``;
    ``space`` maps latents to the diffusion's coordinates and back (the identity by default)."""

    def __init__(self, mbae: MBAE, denoiser: nn.Module, diffusion: LatentDiffusion,
                 space: LatentSpace):
        super().__init__()
        self.mbae, self.denoiser, self.diffusion, self.space = mbae, denoiser, diffusion, space

    def use_sampler(self, **settings) -> None:
        """Sample from now on with these ``omega`` / ``stride`` / ``eta`` (Eq. 17, Eq. 5)."""
        unknown = sorted(set(settings) - set(SAMPLER_SETTINGS))
        if unknown:
            raise TypeError(f"the sampler takes only {SAMPLER_SETTINGS}, not {unknown}; "
                            "other diffusion settings change the trained weights")
        self.diffusion.cfg = dataclasses.replace(self.diffusion.cfg, **settings)  # validated

    @contextmanager
    def sampler(self, **settings) -> Iterator["FatsMB"]:
        """Temporarily sample with other ``omega`` / ``stride`` / ``eta`` (Eq. 17, Eq. 5)::

            with fatsmb.sampler(omega=2.0):
                metrics = ctx.evaluate(fatsmb)
        """
        saved = self.diffusion.cfg
        self.use_sampler(**settings)
        try:
            yield self
        finally:
            self.diffusion.cfg = saved

    def generate(self, z_null: torch.Tensor, behavior: torch.Tensor,
                 generator: torch.Generator | None = None,
                 return_trajectory: bool = False) -> torch.Tensor:
        """z_0 (B, D) under target ``behavior`` (B,) from z_∅ (Algorithm 2, lines 2–5), with the
        sampler settings of ``diffusion.cfg``; with ``return_trajectory`` also the list
        [z_T, …, z_0], every step mapped back to the MBAE's latent space."""
        out = self.diffusion.sample(self.denoiser, self.space.condition(z_null), behavior,
                                    generator=generator, return_trajectory=return_trajectory)
        if not return_trajectory:
            return self.space.decode(out, z_null)
        x_0, steps = out
        return self.space.decode(x_0, z_null), [self.space.decode(x, z_null) for x in steps]

    def score_all(self, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """Scores (B, N) of all items for the target behavior of each row (Algorithm 2); z_T
        (and η's noise) come from ``generator``.

        With ``n_samples`` = K > 1, K latents are drawn per row and averaged: their decoded
        scores ("scores"), or the latents before decoding ("latents"). K = 1 is the paper.
        """
        cfg = self.diffusion.cfg
        z_null = self.mbae.behavior_agnostic(batch["items"], batch["behaviors"])  # (B, D)
        (B, D), K = z_null.shape, cfg.n_samples
        z_0 = self.generate(z_null.repeat_interleave(K, 0),
                            batch["target_behavior"].repeat_interleave(K, 0), generator)  # (B·K, D)
        if cfg.sample_average == "latents":
            return self.mbae.decode(z_0.view(B, K, D).mean(1))                        # (B, N)
        return self.mbae.decode(z_0).view(B, K, -1).mean(1)                          # (B, N)

    def diffusion_loss(self, batch: dict) -> torch.Tensor:
        """Stage 2 (Eq. 16): denoise z_b given z_∅ and b, on precomputed latent batches
        with keys ``z_b``, ``z_null``, ``target_behavior`` (t, ε and the guidance drop come
        from the global generator, which ``fit`` seeds per epoch)."""
        x_0 = self.space.encode(batch["z_b"], batch["z_null"])                    # (B, D)
        return self.diffusion.training_loss(self.denoiser, x_0,
                                            self.space.condition(batch["z_null"]),
                                            batch["target_behavior"])

    def loss(self, batch: dict) -> torch.Tensor:
        """Stage 3 (Algorithm 1, lines 23–28): next-item cross-entropy over all N items of the
        decoded sample, on latent batches with keys ``z_null``, ``target_behavior``, ``target``.
        The sampler runs without gradients, so only the decoder learns.

        NOTE: plain F.cross_entropy on the (B, N) logits, not ``contract.masked_cross_entropy``:
        every row has its one target, so there is nothing to select or pad, and stage 3 keeps
        the exact numerics its checkpoints were fine-tuned with (the fused kernel agrees only
        to float rounding)."""
        z_0 = self.generate(batch["z_null"], batch["target_behavior"])  # (B, D)
        return F.cross_entropy(self.mbae.decode(z_0), batch["target"] - 1)
