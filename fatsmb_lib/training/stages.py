"""The three training stages of FatsMB (Algorithm 1) and the trained baselines, as library calls.

Every function reads its settings from ``ctx.profile`` (change them with
``ctx.replace(field=value)``) and trains through :meth:`fatsmb_lib.training.context.Context.fit`:
validation-based early stopping on the validation item, atomic checkpoints, resume, NaN
guard. A checkpoint's file name carries a digest of every setting that changes its weights,
so calling a function again with the same settings reloads the finished model instead of
retraining, and calling it with another setting trains a new one beside it. That is what
lets each notebook stand alone: notebook 03 calls :func:`train_mbae` and gets notebook 02's
model back, or trains it if 02 was never run.

- stage 1 :func:`train_mbae`       — Cloze pre-training of the MBAE (Eq. 14)
- stage 2 :func:`train_denoiser`   — frozen MBAE, the denoiser learns z_∅ → z_b (Eq. 16)
- stage 3 :func:`finetune_decoder` — frozen MBAE encoder + denoiser, next-item loss on the
  decoder through the full sampler (Algorithm 1, lines 23–28)

The baselines train under the same protocol in ``training.peers``.

The settings that act only when sampling (ω, Δt, η) are not part of stage 2's digest: change
them at inference with ``FatsMB.sampler(...)``. Stage 3 trains on latents sampled with the
run's ω, Δt and η (``ctx.profile``), so they are part of its digest.
"""
from __future__ import annotations

import copy
import dataclasses
from itertools import islice

import torch
from torch import nn

from ..data.batches import ClozeView, PrefixView, cloze_mask, make_loader
from ..models.denoiser import DenoiserConfig, build_denoiser
from ..models.diffusion import DiffusionConfig, LatentDiffusion
from ..models.encoder import MBAE, BehaviorQueryConfig
from ..models.fatsmb import DRAW_SETTINGS, SAMPLER_SETTINGS, FatsMB, LatentSpace
from ..support.checkpoints import state_fingerprint, tensor_fingerprint
from ..support.runtime import epoch_generator
from .context import EVAL_BATCH, Context
from .epochs import Batches, cloze_batches, cloze_settings, tensor_batches
from .registry import ModelSpec, dims, encoder_configs, train
from .train import History


def _cloze_with_behaviors(ctx: Context) -> Batches:
    return cloze_batches(ctx, ctx.profile.sigma)


def _cloze_settings_with_behaviors(ctx: Context) -> dict:
    return cloze_settings(ctx, ctx.profile.sigma)


def _mbae_configs(ctx: Context) -> tuple:
    """The encoder's config, and the behavior query's when the profile asks for that departure
    (only then: the paper's MBAE keeps its checkpoint name)."""
    if not ctx.profile.behavior_query:
        return encoder_configs(ctx)
    return (*encoder_configs(ctx), ctx.profile.config(BehaviorQueryConfig, **dims(ctx)))


# Stage 1: the MBAE trained with the Cloze task (Eq. 14; Algorithm 1, lines 2–15)
MBAE_SPEC = ModelSpec("MBAE", "mbae-{position}", MBAE, _mbae_configs, _cloze_with_behaviors,
                      _cloze_settings_with_behaviors, stage="stage1")


def train_mbae(ctx: Context) -> tuple[MBAE, History]:
    """Stage 1: the MBAE trained with the Cloze task (Eq. 14; Algorithm 1, lines 2–15), the
    profile's ρ and σ."""
    return train(MBAE_SPEC, ctx)


# ----------------------------------------------------------------------------- latents for stages 2-3


@torch.no_grad()
def prefix_latents(mbae: MBAE, ctx: Context,
                   n_batches: int | None = None) -> dict[str, torch.Tensor]:
    """(z_b, z_∅, b, target) at the appended [mask] of every training prefix (or each user's
    ``profile.prefixes_per_user`` most recent ones), from the frozen encoder in eval mode —
    the exact condition of inference (Algorithm 2, line 1). ``n_batches`` limits the work
    (benchmarks)."""
    mbae.eval()
    view = PrefixView(ctx.data, ctx.profile.max_len, "train", ctx.profile.prefixes_per_user)
    n = len(view) if n_batches is None else min(len(view), n_batches * EVAL_BATCH)
    # filled in place: kept per-batch pieces between the batches' freed activations fragment
    # the allocator's heap, which then grows by ~5 MiB a batch (ml100k, measured)
    out = {"z_b": torch.empty(n, mbae.config.d_model, device=ctx.device),
           "z_null": torch.empty(n, mbae.config.d_model, device=ctx.device),
           "target_behavior": torch.empty(n, dtype=torch.long, device=ctx.device),
           "target": torch.empty(n, dtype=torch.long, device=ctx.device)}
    start = 0
    for batch in islice(make_loader(view, EVAL_BATCH, False), n_batches):
        rows = slice(start, start + len(batch["target"]))
        target_behavior = batch["target_behavior"].to(ctx.device)
        out["z_b"][rows], out["z_null"][rows] = mbae.latents(
            batch["items"].to(ctx.device), batch["behaviors"].to(ctx.device), target_behavior)
        out["target_behavior"][rows] = target_behavior
        out["target"][rows] = batch["target"]
        start = rows.stop
    return out


def _rows_fingerprint(latents: dict[str, torch.Tensor]) -> str:
    """Which training prefixes a latents dict holds (their targets and behaviors; the latents
    themselves follow from the encoder's fingerprint): a restricted dict trains a new model."""
    return tensor_fingerprint({key: latents[key] for key in ("target", "target_behavior")})


def cloze_latent_batches(mbae: MBAE, ctx: Context) -> Batches:
    """Stage-2 pairs as the paper states: z_b / z_∅ at Cloze-masked positions (behavior
    visible / masked), new masks every epoch."""
    view = ClozeView(ctx.data, ctx.profile.max_len, ctx.profile.window_stride)

    def batches(epoch: int):
        generator = epoch_generator(ctx.seed, epoch)
        mbae.eval()  # frozen: no dropout while it produces targets (fit() set train mode)
        for batch in make_loader(view, ctx.profile.stage2_batch_size, True, generator):
            # masks drawn on the CPU, from the epoch's CPU generator (the same masks on any device)
            masked = cloze_mask(batch["items"], batch["behaviors"], ctx.profile.rho, 0.0,
                                ctx.data.mask_item, ctx.data.mask_behavior, generator,
                                last_only_prob=0.0)["targets"] > 0
            items, behaviors, masked = (t.to(ctx.device) for t in
                                        (batch["items"], batch["behaviors"], masked))
            with torch.no_grad():
                z_b, z_null, _, b = mbae.latents_at(items, behaviors, masked)
            yield {"z_b": z_b, "z_null": z_null, "target_behavior": b}
    return batches


# ----------------------------------------------------------------------------- stages 2 and 3


def build_fatsmb(mbae: MBAE, ctx: Context) -> FatsMB:
    """FatsMB around a COPY of the stage-1 MBAE (stage 3 then changes only the copy's decoder,
    so the MBAE row of the comparison stays the stage-1 model)."""
    p = ctx.profile
    diffusion = LatentDiffusion(p.config(DiffusionConfig))
    denoiser = ctx.build(build_denoiser, p.config(DenoiserConfig, n_behaviors=ctx.data.n_behaviors))
    space = LatentSpace(p.d_model, p.diffusion_target, p.latent_scaling)
    return FatsMB(copy.deepcopy(mbae), denoiser, diffusion, space).to(ctx.device)


def _freeze(module: nn.Module) -> None:
    module.eval()
    for param in module.parameters():
        param.requires_grad_(False)


def train_denoiser(mbae: MBAE, ctx: Context, latents: dict | None = None) -> tuple[FatsMB, History]:
    """Stage 2 (Algorithm 1, lines 16–22): encoder and decoder frozen, the denoiser learns to
    turn noise into z_b given z_∅ and b (Eq. 16, with CFG dropout of b).

    ``profile.stage2_source`` = "prefix" trains on (z_b, z_∅) at the appended [mask] of the
    training prefixes (``latents`` from :func:`prefix_latents`, computed here if not given:
    the encoder is frozen, so once is enough); "cloze" on Cloze-masked positions, the paper's
    wording. The latent space's statistics (``profile.latent_scaling``) come from the prefix
    latents either way.
    """
    p = ctx.profile
    model = build_fatsmb(mbae, ctx)
    _freeze(model.mbae)
    latents = latents if latents is not None else prefix_latents(model.mbae, ctx)
    model.space.fit_(latents["z_b"], latents["z_null"])
    if p.stage2_source == "prefix":
        batches = lambda epoch: tensor_batches(latents, p.stage2_batch_size,  # noqa: E731
                                               epoch_generator(ctx.seed, epoch))
        source = {"source": "prefix", "rows": _rows_fingerprint(latents)}
    elif p.stage2_source == "cloze":
        batches = cloze_latent_batches(model.mbae, ctx)
        source = {"source": "cloze", "rho": p.rho, "window_stride": p.window_stride}
    else:
        raise ValueError(f"stage2_source must be 'prefix' or 'cloze', not {p.stage2_source!r}")
    trained = {k: v for k, v in dataclasses.asdict(p.config(DiffusionConfig)).items()
               if k not in SAMPLER_SETTINGS}  # sampler-only settings: see the module docstring
    settings = {"stage": 2, "mbae": state_fingerprint(mbae), "diffusion": trained,
                "space": {"target": p.diffusion_target, "scaling": p.latent_scaling},
                "denoiser": dataclasses.asdict(p.config(DenoiserConfig,
                                                        n_behaviors=ctx.data.n_behaviors)),
                "batch_size": p.stage2_batch_size, **source}
    history = ctx.fit(model, f"denoiser-{p.denoiser}-{p.prediction}", "stage2",
                      model.denoiser.parameters(), batches, model.diffusion_loss, settings)
    return model, history


def finetune_decoder(model: FatsMB, ctx: Context, latents: dict | None = None) -> History:
    """Stage 3 (Algorithm 1, lines 23–28): encoder and denoiser frozen, the decoder is
    fine-tuned with next-item cross-entropy on z_0 sampled from z_∅ of every training prefix,
    with the run's sampler settings (``ctx.profile``'s ω, Δt, η), which the model then keeps.
    With ``profile.stage3_keeps_stage2`` the decoder stage 2 left is epoch 0 of the early
    stopping: an epoch replaces it only if it validates better.

    NOTE: Algorithm 1 uses each sequence's last item only; we use every training prefix
    (the next-item signal that makes SASRec strong), measured in notebook 04.
    """
    p = ctx.profile
    _freeze(model.mbae.encoder)
    _freeze(model.denoiser)
    model.mbae.decoder.requires_grad_(True)  # stage 2 froze the whole MBAE
    latents = latents if latents is not None else prefix_latents(model.mbae, ctx)
    model.use_sampler(**{name: getattr(p, name) for name in SAMPLER_SETTINGS})
    settings = {"stage": 3, "model": state_fingerprint(model), "batch_size": p.batch_size,
                "rows": _rows_fingerprint(latents),
                "sampler": {name: getattr(p, name) for name in DRAW_SETTINGS}}
    tensors = {key: latents[key] for key in ("z_null", "target_behavior", "target")}
    return ctx.fit(model, "decoder", "stage3", model.mbae.decoder.parameters(),
                   lambda epoch: tensor_batches(tensors, p.batch_size,
                                                epoch_generator(ctx.seed, epoch)),
                   model.loss, settings, keep_initial=p.stage3_keeps_stage2)
