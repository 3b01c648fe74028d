"""DiffuRec (Li et al., TOIS 2023): the next item as a distribution, recovered by diffusion.

Training (one prefix S = v_1..v_n per row, target v_{n+1}):

    x_0 = E[v_{n+1}]                                    target item embedding
    x_t = sqrt(ᾱ_t)·x_0 + sqrt(1 − ᾱ_t)·ε,  t ~ U{0..T−1}, ε ~ N(0, I)   forward process
    x̂_0 = f_θ(S, x_t, t) = Transformer(E[S] + λ ⊙ (x_t + e_t))[newest]    approximator
    loss = CE(x̂_0 · E[1..N]^T, v_{n+1})                full softmax over all N items

The noised target, shifted by a timestep embedding e_t = MLP(sinusoid(t)), is added to every
position of the sequence, scaled by λ ~ N(δ, δ²) drawn per element ("uncertainty" of the
item representation); the approximator reads x̂_0 at the newest position. Inference starts
from x_T ~ N(0, I) and runs the reverse process with x̂_0 = f_θ(S, x_t, t) at each step (DDIM
jumps of ``diffurec_stride`` timesteps, ``eta`` as in ``fatsmb_lib.models.diffusion``), then
scores x̂_0 against all items. Behaviors are ignored: DiffuRec is a single-behavior model.

Symbol map (code ↔ paper): ``x0`` ↔ x_0, ``x_t`` ↔ x_t, ``lam`` ↔ λ, ``diffurec_lambda`` ↔ δ,
``diffurec_T`` ↔ T, ``reconstruct`` ↔ f_θ. The schedule, q_sample and the DDIM sampler are
those of :class:`fatsmb_lib.models.diffusion.LatentDiffusion` with x0-prediction.

Shapes: B batch, L sequence length, D model width, N items.

NOTE: trained on every training prefix (``PrefixView(data, L, "train")``), as the authors'
code does (each prefix of a sequence with its next item as the target); the [mask] column of
the view is dropped, the history alone is the approximator's input.
NOTE: the authors sample t with a loss-aware sampler; we sample t uniformly.
NOTE: the authors' schedule is "trunc_lin" (linear + 0.01) with ancestral sampling over all T
steps; we use the library's "linear" schedule and DDIM jumps (diffurec_stride = 1, eta = 1 is
the ancestral sampler with the posterior variance).
NOTE: the released code has no positional embeddings (they are commented out), so its
bidirectional approximator sees the history as a set plus its newest item; we keep learned
absolute positions, as SASRec does.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from .contract import item_weight, masked_cross_entropy
from .denoiser import timestep_embedding
from .diffusion import DiffusionConfig, LatentDiffusion
from .encoder import EncoderConfig, SequenceEncoder


@dataclass(kw_only=True)
class DiffuRecConfig:
    """Diffusion settings of DiffuRec, built by ``Profile.config`` (fields carry the
    profile's names; the authors: T = 32 steps, δ = 0.001)."""

    diffurec_T: int  # T
    diffurec_schedule: str
    diffurec_stride: int  # Δt at inference: ceil(T / Δt) approximator calls
    eta: float  # 0 = deterministic DDIM jumps
    diffurec_lambda: float  # δ: λ ~ N(δ, δ²) per element


class DiffuRec(nn.Module):
    """Transformer approximator + forward/reverse diffusion of the target item embedding."""

    def __init__(self, encoder: EncoderConfig, diffusion: DiffuRecConfig):
        super().__init__()
        self.config = replace(encoder, use_behavior=False, position="ape", causal=False)
        self.diffusion_config = diffusion
        self.encoder = SequenceEncoder(self.config)  # item + position embeddings, blocks, ln_f
        D = self.config.d_model
        self.time_mlp = nn.Sequential(nn.Linear(D, 4 * D), nn.SiLU(), nn.Linear(4 * D, D))
        self.diffusion = LatentDiffusion(DiffusionConfig(
            T=diffusion.diffurec_T, schedule=diffusion.diffurec_schedule,
            stride=diffusion.diffurec_stride, eta=diffusion.eta, prediction="x0", p_uncond=0.0,
            omega=0.0, n_samples=1, sample_average="scores"))

    def reconstruct(self, history: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """f_θ(S, x_t, t): history (B, L') left-padded, x_t (B, D), t (B,) -> x̂_0 (B, D).

        λ is drawn from ``generator`` (the global RNG when None)."""
        B, L = history.shape
        D = self.config.d_model
        delta = self.diffusion_config.diffurec_lambda
        e_t = self.time_mlp(timestep_embedding(t * (1000.0 / self.diffusion.T), D))  # (B, D)
        lam = torch.normal(delta, delta, (B, L, D), generator=generator, device=history.device)
        x = self.encoder.drop(self.encoder.embed(history, None)) + lam * (x_t + e_t)[:, None, :]
        pad = history == 0  # (B, L)
        for block in self.encoder.blocks:
            x = block(x, None, pad)
        return self.encoder.ln_f(x)[:, -1]  # (B, D) newest position

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """CE of x̂_0 against all N items, x̂_0 reconstructed from x_t at a random t
        (a ``PrefixView`` batch: ``items`` ends with [mask], ``target`` (B,))."""
        history, target = batch["items"][:, :-1], batch["target"]  # (B, L-1), (B,)
        B = target.shape[0]
        x0 = self.encoder.item_embedding(target)  # (B, D)
        t = torch.randint(0, self.diffusion.T, (B,), device=target.device)
        x_t = self.diffusion.q_sample(x0, t, torch.randn_like(x0))  # (B, D)
        x0_hat = self.reconstruct(history, x_t, t)  # (B, D)
        return masked_cross_entropy(x0_hat, target, item_weight(self.encoder.item_embedding))

    @torch.no_grad()
    def sample(self, history: torch.Tensor, generator: torch.Generator | None = None
               ) -> torch.Tensor:
        """Reverse process from x_T ~ N(0, I) to x̂_0 (B, D): the library's DDIM sampler
        (``LatentDiffusion.sample``, unguided) with f_θ as its x̂_0-predicting network. Every
        draw comes from ``generator``: x_T, then per step λ and (η > 0) the step's noise."""
        B, D = history.shape[0], self.config.d_model
        x_T = torch.randn(B, D, generator=generator, device=history.device)
        f_theta = lambda x_t, t, *_: self.reconstruct(history, x_t, t, generator)  # noqa: E731
        return self.diffusion.sample(f_theta, None, None, generator=generator, z_T=x_T)

    def score_all(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
                  ) -> torch.Tensor:
        """Scores (B, N) of a prefix batch: x̂_0 sampled from the history, dotted with all items."""
        x0_hat = self.sample(batch["items"][:, :-1], generator)  # (B, D)
        return x0_hat @ item_weight(self.encoder.item_embedding).T
