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
23–28). Which parameters move in each stage is decided by the caller (``fatsmb_lib.stages``).
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

SAMPLER_SETTINGS = ("omega", "stride", "eta")  # act only when sampling: never retrain for them


class FatsMB(nn.Module):
    """Encoder + denoiser + decoder; the sampler's ω, Δt and η are those of ``diffusion.cfg``."""

    def __init__(self, mbae: MBAE, denoiser: nn.Module, diffusion: LatentDiffusion):
        super().__init__()
        self.mbae, self.denoiser, self.diffusion = mbae, denoiser, diffusion

    @contextmanager
    def sampler(self, **settings) -> Iterator["FatsMB"]:
        """Temporarily sample with other ``omega`` / ``stride`` / ``eta`` (Eq. 17, Eq. 5)::

            with fatsmb.sampler(omega=2.0):
                metrics = ctx.evaluate(fatsmb)
        """
        unknown = sorted(set(settings) - set(SAMPLER_SETTINGS))
        if unknown:
            raise TypeError(f"sampler() takes only {SAMPLER_SETTINGS}, not {unknown}; "
                            "other diffusion settings change the trained weights")
        saved = self.diffusion.cfg
        self.diffusion.cfg = dataclasses.replace(saved, **settings)  # validated by the config
        try:
            yield self
        finally:
            self.diffusion.cfg = saved

    def generate(self, z_null: torch.Tensor, behavior: torch.Tensor,
                 generator: torch.Generator | None = None,
                 return_trajectory: bool = False) -> torch.Tensor:
        """z_0 (B, D) under target ``behavior`` (B,) from z_∅ (Algorithm 2, lines 2–5), with the
        sampler settings of ``diffusion.cfg``; with ``return_trajectory`` also [z_T, …, z_0]."""
        return self.diffusion.sample(self.denoiser, z_null, behavior, generator=generator,
                                     return_trajectory=return_trajectory)

    def score_all(self, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """Scores (B, N) of all items for the target behavior of each row (Algorithm 2); z_T
        (and η's noise) come from ``generator``."""
        z_null = self.mbae.behavior_agnostic(batch["items"], batch["behaviors"])  # (B, D)
        z_0 = self.generate(z_null, batch["target_behavior"], generator)           # (B, D)
        return self.mbae.decode(z_0)                                               # (B, N)

    def diffusion_loss(self, batch: dict) -> torch.Tensor:
        """Stage 2 (Eq. 16): denoise z_b given z_∅ and b, on precomputed latent batches
        with keys ``z_b``, ``z_null``, ``behavior`` (t, ε and the guidance drop come from the
        global generator, which ``fit`` seeds per epoch)."""
        return self.diffusion.training_loss(self.denoiser, batch["z_b"], batch["z_null"],
                                            batch["behavior"])

    def loss(self, batch: dict) -> torch.Tensor:
        """Stage 3 (Algorithm 1, lines 23–28): next-item cross-entropy over all N items of the
        decoded sample, on latent batches with keys ``z_null``, ``behavior``, ``target``.
        The sampler runs without gradients, so only the decoder learns."""
        z_0 = self.generate(batch["z_null"], batch["behavior"])  # (B, D)
        return F.cross_entropy(self.mbae.decode(z_0), batch["target"] - 1)
