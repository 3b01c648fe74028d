"""The latent space of a trained FatsMB: what notebook 03 looks at (Figure 6, trajectories).

- :func:`user_latents` — for the evaluation users of a split: z_∅ from the encoder, the
  encoder's own z_b under each behavior, and the diffusion's generated z_0 under each behavior.
- :func:`cosine_by_behavior` — cos(z_∅, z_0^b) per user and behavior (Figure 6b).
- :func:`latent_scale` — how long the behavior-specific offset z_b − z_∅ is next to z_b.
- :func:`tsne_2d` — a 2-D t-SNE of behavior-specific preferences (Figure 6a).
- :func:`trajectory_distances` — ‖z_t − z_b‖ and ‖z_t − z_∅‖ along the DDIM steps.
"""
from __future__ import annotations

from itertools import islice

import numpy as np
import torch
import torch.nn.functional as F

from ..models.fatsmb import FatsMB


@torch.no_grad()
def user_latents(model: FatsMB, loader, n_batches: int | None = None,
                 generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """For every row of ``loader`` (prefix batches) and every behavior b = 1..n_behaviors:

    ``z_null`` (U, D); ``z_b`` (n_behaviors, U, D) — the encoder's output with b visible at
    the [mask] column; ``z_gen`` (n_behaviors, U, D) — z_0 sampled under b (Algorithm 2);
    ``target_behavior`` (U,). Tensors are on the CPU.
    """
    model.eval()
    device = next(model.parameters()).device
    n_behaviors = model.mbae.config.n_behaviors
    parts: dict[str, list] = {"z_null": [], "z_b": [], "z_gen": [], "target_behavior": []}
    for batch in islice(loader, n_batches):
        items, behaviors = batch["items"].to(device), batch["behaviors"].to(device)
        B = items.shape[0]
        z_null = model.mbae.behavior_agnostic(items, behaviors)                 # (B, D)
        z_b, z_gen = [], []
        for b in range(1, n_behaviors + 1):                                     # a few behaviors
            target = torch.full((B,), b, device=device)
            z_b.append(model.mbae.latents(items, behaviors, target)[0])        # (B, D)
            z_gen.append(model.generate(z_null, target, generator))            # (B, D)
        parts["z_null"].append(z_null.cpu())
        parts["z_b"].append(torch.stack(z_b).cpu())                             # (n_b, B, D)
        parts["z_gen"].append(torch.stack(z_gen).cpu())
        parts["target_behavior"].append(batch["target_behavior"])
    return {"z_null": torch.cat(parts["z_null"]), "z_b": torch.cat(parts["z_b"], dim=1),
            "z_gen": torch.cat(parts["z_gen"], dim=1),
            "target_behavior": torch.cat(parts["target_behavior"])}


def cosine_by_behavior(z_null: torch.Tensor, z_by_behavior: torch.Tensor) -> torch.Tensor:
    """cos(z_∅, z^b) for each behavior and user: (n_behaviors, U) from (U, D), (n_b, U, D)."""
    return F.cosine_similarity(z_null[None], z_by_behavior, dim=-1)


def latent_scale(z_b: torch.Tensor, z_null: torch.Tensor) -> dict[str, float]:
    """How much of z_b is behavior-specific, over rows of (N, D) latents: the mean ‖z_b‖,
    the mean ‖z_b − z_∅‖ (the offset the diffusion has to generate), their ratio, and the
    mean cos(z_b, z_∅). A small ratio means the decoder reads almost the same vector with
    or without the target behavior."""
    length = z_b.norm(dim=-1).mean().item()
    offset = (z_b - z_null).norm(dim=-1).mean().item()
    return {"|z_b|": length, "|z_b − z_∅|": offset, "|z_b − z_∅| / |z_b|": offset / length,
            "cos(z_b, z_∅)": F.cosine_similarity(z_b, z_null, dim=-1).mean().item()}


def tsne_2d(points: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D t-SNE embedding (n, 2) of ``points`` (n, D) (Figure 6a)."""
    from sklearn.manifold import TSNE

    perplexity = min(30.0, max(5.0, (len(points) - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, init="pca",
                random_state=seed).fit_transform(np.asarray(points, dtype=np.float32))


def trajectory_distances(trajectory: list[torch.Tensor], z_b: torch.Tensor,
                         z_null: torch.Tensor) -> np.ndarray:
    """(2, steps + 1): mean over rows of ‖z_t − z_b‖ and of ‖z_t − z_∅‖ for [z_T, …, z_0]."""
    steps = torch.stack(trajectory)                                  # (steps + 1, B, D)
    to_target = (steps - z_b).norm(dim=-1).mean(dim=-1)
    to_condition = (steps - z_null).norm(dim=-1).mean(dim=-1)
    return torch.stack([to_target, to_condition]).cpu().numpy()
