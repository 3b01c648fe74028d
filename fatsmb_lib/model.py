"""FatsMB: the MBAE encoder, latent preference diffusion and the MBAE decoder, end to end.

Algorithm 2 (inference), for a prefix batch whose last column is the [mask] item:

    z_∅ = E(S_u, [mask])                 # behavior-agnostic preference (behavior masked)
    z_0 = DDIM-CFG(z_T ~ N(0, I) | z_∅, b)  # behavior-specific preference (Eqs. 5, 17)
    scores = D(z_0)                      # decoder scored against all N items

Symbols: ``z_null`` ↔ z_∅, ``z_b`` ↔ z_b, ``omega`` ↔ ω, ``stride`` ↔ Δt.

The three training stages (Algorithm 1) are three losses of this one model:
``MBAE.loss`` (stage 1, Cloze, Eq. 14), :meth:`FatsMB.diffusion_loss` (stage 2, Eq. 16) and
:meth:`FatsMB.loss` (stage 3: next-item cross-entropy on the decoded z_0, Algorithm 1 lines
23–28). Which parameters move in each stage is decided by the caller (``fatsmb_lib.stages``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .diffusion import LatentDiffusion
from .encoder import MBAE
from .evaluate import recommend_topk


class FatsMB(nn.Module):
    """Encoder + denoiser + decoder with the sampler settings used at inference."""

    def __init__(self, mbae: MBAE, denoiser: nn.Module, diffusion: LatentDiffusion,
                 omega: float = 1.0, stride: int = 20, eta: float = 0.0):
        super().__init__()
        self.mbae, self.denoiser, self.diffusion = mbae, denoiser, diffusion
        self.omega, self.stride, self.eta = omega, stride, eta

    def behavior_agnostic(self, items: torch.Tensor, behaviors: torch.Tensor) -> torch.Tensor:
        """z_∅ (B, D): the encoder output at the [mask] column with its behavior masked too."""
        behaviors = behaviors.clone()
        behaviors[:, -1] = self.mbae.mask_behavior
        return self.mbae.encode(items, behaviors)[:, -1]  # (B, D)

    def generate(self, z_null: torch.Tensor, behavior: torch.Tensor,
                 generator: torch.Generator | None = None, **sampler) -> torch.Tensor:
        """z_0 (B, D) under target ``behavior`` (B,) from z_∅ (Algorithm 2, lines 2–5).

        ``sampler`` may override ``omega``, ``stride``, ``eta``, ``return_trajectory``.
        """
        options = dict(omega=self.omega, stride=self.stride, eta=self.eta) | sampler
        return self.diffusion.sample(self.denoiser, z_null, behavior, generator=generator,
                                     **options)

    def score_all(self, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """Scores (B, N) of all items for the target behavior of each row (Algorithm 2)."""
        z_null = self.behavior_agnostic(batch["items"], batch["behaviors"])   # (B, D)
        z_0 = self.generate(z_null, batch["target_behavior"], generator)      # (B, D)
        return self.mbae.decode(z_0)                                          # (B, N)

    def diffusion_loss(self, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """Stage 2 (Eq. 16): denoise z_b given z_∅ and b, on precomputed latent batches
        with keys ``z_b``, ``z_null``, ``behavior``."""
        return self.diffusion.training_loss(self.denoiser, batch["z_b"], batch["z_null"],
                                            batch["behavior"], generator)

    def loss(self, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """Stage 3 (Algorithm 1, lines 23–28): next-item cross-entropy over all N items of the
        decoded sample, on latent batches with keys ``z_null``, ``behavior``, ``target``.
        The sampler runs without gradients, so only the decoder learns."""
        z_0 = self.generate(batch["z_null"], batch["behavior"], generator)  # (B, D)
        return F.cross_entropy(self.mbae.decode(z_0), batch["target"] - 1)


@torch.no_grad()
def recommend(model: nn.Module, items, behaviors, behavior: int, *, n_items: int,
              n_behaviors: int, max_len: int, k: int = 10,
              titles: list[str] | None = None) -> list[tuple[int, str]]:
    """Top-k (item id, name) for ONE history under the target ``behavior``, for any model with
    ``score_all`` (FatsMB, the MBAE, the baselines).

    ``items``/``behaviors`` (L_hist,) are the history, oldest first, without padding; the last
    L-1 are kept, then the [mask] item carrying the target behavior (Algorithm 2's input).
    Names come from ``titles`` (indexed by item id − 1) or are the ids. Items already in the
    history are not removed. Sampling models draw from torch's global generator: seed it.
    """
    device = next(iter(model.state_dict().values())).device
    items = torch.as_tensor(items, device=device).long()[-(max_len - 1):]
    behaviors = torch.as_tensor(behaviors, device=device).long()[-(max_len - 1):]
    pad = torch.zeros(max_len - 1 - len(items), dtype=torch.long, device=device)
    last = torch.tensor([[n_items + 1, behavior]], device=device)   # [mask] item, target behavior
    assert 1 <= behavior <= n_behaviors, f"behavior must be in 1..{n_behaviors}, got {behavior}"
    batch = {  # (1, L), left padding
        "items": torch.cat([pad, items, last[:, 0]])[None],
        "behaviors": torch.cat([pad, behaviors, last[:, 1]])[None],
        "target_behavior": last[:, 1],
    }
    model.eval()
    top = recommend_topk(model.score_all(batch), k)[0].tolist()
    return [(i, titles[i - 1] if titles else str(i)) for i in top]
