"""The three training stages of FatsMB (Algorithm 1) and the trained baselines, as library calls.

Every function trains through :func:`fatsmb_lib.train.fit` (validation-based early stopping on
the validation item, atomic checkpoints, resume, NaN guard) with a checkpoint in
``run_dir``; calling it again with the same data and settings reloads the finished model
instead of retraining. That is what lets each notebook stand alone: notebook 03 calls
:func:`train_mbae` and gets notebook 02's model back, or trains it if 02 was never run.

- stage 1 :func:`train_mbae`      — Cloze pre-training of the MBAE (Eq. 14)
- stage 2 :func:`train_denoiser`  — frozen MBAE, the denoiser learns z_∅ → z_b (Eq. 16)
- stage 3 :func:`finetune_decoder` — frozen MBAE encoder + denoiser, next-item loss on the
  decoder through the full sampler (Algorithm 1, lines 23–28)
"""
from __future__ import annotations

import copy
import hashlib
from itertools import islice
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .baselines import SASRec, BERT4Rec, Pop
from .batches import ClozeCollate, ClozeView, NextItemView, PrefixView, cloze_mask, make_loader
from .config import Profile, default_run_dir, get_profile, project_root
from .denoiser import DenoiserConfig, build_denoiser
from .diffusion import DiffusionConfig, LatentDiffusion
from .encoder import MBAE, EncoderConfig
from .evaluate import evaluate
from .model import FatsMB
from .preprocess import SequenceData, load_dataset
from .train import History, TrainConfig, fit, make_generator, resolve_device, seed_everything

EVAL_BATCH = 1024


@dataclass
class Context:
    """What every stage needs: the data, the profile, where to checkpoint, and how to report."""

    data: SequenceData
    profile: Profile
    run_dir: Path
    device: torch.device = field(default_factory=lambda: resolve_device("auto"))
    seed: int = 0
    progress: bool = False
    log: Callable[[str], object] = print

    def loader(self, split: str) -> torch.utils.data.DataLoader:
        """Evaluation batches (one row per user) for ``split`` = "valid" | "test"."""
        return make_loader(PrefixView(self.data, self.profile.max_len, split), EVAL_BATCH, False)

    def evaluate(self, model: nn.Module, split: str = "valid", seed: int | None = None) -> dict:
        """Full-ranking metrics on ``split``; sampling models are seeded for repeatability."""
        torch.manual_seed(self.seed if seed is None else seed)
        return evaluate(model, self.loader(split), behavior_names=self.data.behavior_names,
                        device=self.device)

    def train_config(self, epochs: int, min_epochs: int = 1) -> TrainConfig:
        p = self.profile
        return TrainConfig(lr=p.lr, weight_decay=p.weight_decay, batch_size=p.batch_size,
                           max_epochs=epochs, patience=p.patience, min_epochs=min_epochs,
                           seed=self.seed)

    def fit(self, model: nn.Module, name: str, params, train_batches, loss_fn, epochs: int,
            config: dict, min_epochs: int = 1) -> History:
        """``train.fit`` with this run's checkpoint path, fingerprint and validation."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        return fit(model, params=params, train_batches=train_batches, loss_fn=loss_fn,
                   validate=lambda: self.evaluate(model, "valid"),
                   cfg=self.train_config(epochs, min_epochs),
                   checkpoint_path=self.run_dir / f"{name}-seed{self.seed}.pt",
                   fingerprint=self.data.fingerprint, config=config, progress=self.progress,
                   log=self.log)


def open_run(dataset: str, profile: str, device: str = "auto", run_dir: str | Path = "",
             data_dir: str | Path = "", seed: int = 0, **overrides) -> Context:
    """Everything a notebook derives from its papermill parameters, in one call.

    The profile adjusted for the dataset, with ``overrides`` (profile field -> value; None
    means "keep the profile's value"); ``data_dir`` empty -> ``<repo>/data``; ``run_dir``
    empty -> ``runs/<dataset>-<profile>`` (created); the data loaded; all seeds set. Training logs
    are silenced (notebooks print their own summaries).
    """
    settings = get_profile(profile, dataset)
    settings = settings.replace(**{k: v for k, v in overrides.items() if v is not None})
    data = load_dataset(dataset, Path(data_dir) if data_dir else project_root() / "data")
    seed_everything(seed)
    run_dir = Path(run_dir) if run_dir else default_run_dir(dataset, profile)
    run_dir.mkdir(parents=True, exist_ok=True)
    return Context(data, settings, run_dir, device=resolve_device(device), seed=seed,
                   progress=False, log=lambda line: None)


def epoch_generator(ctx: Context, epoch: int) -> torch.Generator:
    """The generator of one epoch's shuffling and masking: a function of (seed, epoch) only, so
    a resumed run draws exactly what the uninterrupted run would have drawn."""
    return make_generator(ctx.seed * 100_003 + epoch)


def state_fingerprint(module: nn.Module) -> str:
    """A short hash of a module's weights: later stages record which stage-1 model they used,
    so a retrained encoder invalidates their checkpoints."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def encoder_config(ctx: Context, **changes) -> EncoderConfig:
    p, d = ctx.profile, ctx.data
    options = dict(n_items=d.n_items, n_behaviors=d.n_behaviors, d_model=p.d_model,
                   n_heads=p.n_heads, n_layers=p.n_layers, dropout=p.dropout,
                   max_len=p.max_len, position=p.position) | changes
    return EncoderConfig(**options)


# ----------------------------------------------------------------------------- stage 1 and baselines


def _cloze_batches(ctx: Context, rho: float, sigma: float) -> Callable[[int], object]:
    view = ClozeView(ctx.data, ctx.profile.max_len)

    def batches(epoch: int):
        generator = epoch_generator(ctx, epoch)
        collate = ClozeCollate(rho, sigma, ctx.data.mask_item, ctx.data.mask_behavior, generator,
                               ctx.profile.last_only_prob)
        return make_loader(view, ctx.profile.batch_size, True, generator, collate)
    return batches


def train_mbae(ctx: Context, position: str | None = None, rho: float | None = None,
               sigma: float | None = None, epochs: int | None = None) -> tuple[MBAE, History]:
    """Stage 1: the MBAE trained with the Cloze task (Eq. 14; Algorithm 1, lines 2–15)."""
    p = ctx.profile
    rho, sigma = (p.rho if rho is None else rho), (p.sigma if sigma is None else sigma)
    cfg = encoder_config(ctx, **({"position": position} if position else {}))
    model = MBAE(cfg).to(ctx.device)
    name = f"mbae-{cfg.position}-rho{rho}-sigma{sigma}-last{p.last_only_prob}"
    history = ctx.fit(model, name, model.parameters(),
                      _cloze_batches(ctx, rho, sigma), model.loss, epochs or p.stage1_epochs,
                      {"model": "MBAE", "encoder": vars(cfg), "rho": rho, "sigma": sigma,
                       "last_only_prob": p.last_only_prob}, min_epochs=p.min_epochs)
    return model, history


def train_bert4rec(ctx: Context) -> tuple[BERT4Rec, History]:
    """BERT4Rec: the same encoder with no behavior information, APE, Cloze (Section 4.1.3)."""
    cfg = encoder_config(ctx, position="ape", use_behavior=False)
    model = BERT4Rec(cfg).to(ctx.device)
    p = ctx.profile
    history = ctx.fit(model, "bert4rec", model.parameters(), _cloze_batches(ctx, p.rho, 0.0),
                      model.loss, p.baseline_epochs,
                      {"model": "BERT4Rec", "encoder": vars(cfg), "rho": p.rho,
                       "last_only_prob": p.last_only_prob}, min_epochs=p.min_epochs)
    return model, history


def train_sasrec(ctx: Context) -> tuple[SASRec, History]:
    """SASRec: causal Transformer, next-item cross-entropy at every position of the window."""
    cfg = encoder_config(ctx, position="ape", use_behavior=False, causal=True)
    model = SASRec(cfg).to(ctx.device)
    view = NextItemView(ctx.data, ctx.profile.max_len)

    def batches(epoch: int):
        return make_loader(view, ctx.profile.batch_size, True, epoch_generator(ctx, epoch))
    history = ctx.fit(model, "sasrec", model.parameters(), batches, model.loss,
                      ctx.profile.baseline_epochs, {"model": "SASRec", "encoder": vars(cfg)},
                      min_epochs=ctx.profile.min_epochs)
    return model, history


def fit_pop(ctx: Context, per_behavior: bool = False) -> Pop:
    """Popularity from the training part of each sequence (never the validation/test items)."""
    split = ctx.data.split()
    items = torch.as_tensor(split.train_items).long()
    behaviors = torch.as_tensor(split.train_behaviors).long()
    return Pop.fit(items, behaviors, ctx.data.n_items, ctx.data.n_behaviors, per_behavior).to(ctx.device)


# ----------------------------------------------------------------------------- latents for stages 2-3


@torch.no_grad()
def prefix_latents(mbae: MBAE, ctx: Context, n_batches: int | None = None) -> dict[str, torch.Tensor]:
    """(z_b, z_∅, b, target) at the appended [mask] of every training prefix (or each user's
    ``profile.prefixes_per_user`` most recent ones), from the frozen encoder in eval mode —
    the exact condition of inference (Algorithm 2, line 1). ``n_batches`` limits the work
    (benchmarks)."""
    mbae.eval()
    view = PrefixView(ctx.data, ctx.profile.max_len, "train", ctx.profile.prefixes_per_user)
    parts = {"z_b": [], "z_null": [], "behavior": [], "target": []}
    for batch in islice(make_loader(view, EVAL_BATCH, False), n_batches):
        items, behaviors = batch["items"].to(ctx.device), batch["behaviors"].to(ctx.device)
        z_b, z_null = mbae.latents(items, behaviors, batch["target_behavior"].to(ctx.device))
        parts["z_b"].append(z_b)
        parts["z_null"].append(z_null)
        parts["behavior"].append(batch["target_behavior"].to(ctx.device))
        parts["target"].append(batch["target"].to(ctx.device))
    return {key: torch.cat(value) for key, value in parts.items()}


def _tensor_batches(tensors: dict[str, torch.Tensor], batch_size: int, generator: torch.Generator):
    """Shuffled mini-batches of equally long tensors (already on the device)."""
    n = len(next(iter(tensors.values())))
    order = torch.randperm(n, generator=generator).to(next(iter(tensors.values())).device)
    for start in range(0, n, batch_size):
        index = order[start:start + batch_size]
        yield {key: value[index] for key, value in tensors.items()}


def _cloze_latent_batches(mbae: MBAE, ctx: Context, epoch: int):
    """Stage-2 pairs as the paper states: z_b / z_∅ at Cloze-masked positions (behavior
    visible / masked), new masks every epoch."""
    generator = epoch_generator(ctx, epoch)
    view = ClozeView(ctx.data, ctx.profile.max_len)
    mbae.eval()  # frozen: no dropout while it produces targets (fit() set train mode)
    for batch in make_loader(view, ctx.profile.batch_size, True, generator):
        items, behaviors = batch["items"].to(ctx.device), batch["behaviors"].to(ctx.device)
        masked = cloze_mask(items, behaviors, ctx.profile.rho, 0.0, ctx.data.mask_item,
                            ctx.data.mask_behavior, generator)["labels"] > 0
        with torch.no_grad():
            z_b, z_null, _, b = mbae.latents_at(items, behaviors, masked)
        yield {"z_b": z_b, "z_null": z_null, "behavior": b}


# ----------------------------------------------------------------------------- stages 2 and 3


def build_fatsmb(mbae: MBAE, ctx: Context, **changes) -> FatsMB:
    """FatsMB around a COPY of the stage-1 MBAE (stage 3 then changes only the copy's decoder,
    so the MBAE row of the comparison stays the stage-1 model)."""
    p = ctx.profile.replace(**changes)
    diffusion = LatentDiffusion(DiffusionConfig(T=p.T, schedule=p.schedule, stride=p.stride,
                                                eta=p.eta, prediction=p.prediction,
                                                p_uncond=p.p_uncond, omega=p.omega))
    denoiser = build_denoiser(DenoiserConfig(kind=p.denoiser, d_model=p.d_model,
                                             n_layers=p.n_denoiser_layers,
                                             n_behaviors=ctx.data.n_behaviors,
                                             n_shared=p.n_shared, n_private=p.n_private))
    return FatsMB(copy.deepcopy(mbae), denoiser, diffusion, p.omega, p.stride, p.eta).to(ctx.device)


def _freeze(module: nn.Module) -> None:
    module.eval()
    for param in module.parameters():
        param.requires_grad_(False)


def train_denoiser(mbae: MBAE, ctx: Context, source: str = "prefix", epochs: int | None = None,
                   latents: dict | None = None, **changes) -> tuple[FatsMB, History]:
    """Stage 2 (Algorithm 1, lines 16–22): encoder and decoder frozen, the denoiser learns to
    turn noise into z_b given z_∅ and b (Eq. 16, with CFG dropout of b).

    ``source`` = "prefix" trains on (z_b, z_∅) at the appended [mask] of every training prefix
    (precomputed once: the encoder is frozen); "cloze" on Cloze-masked positions, the paper's
    wording. ``changes`` override profile fields (denoiser, prediction, omega, …).
    """
    model = build_fatsmb(mbae, ctx, **changes)
    _freeze(model.mbae)
    if source == "prefix":
        latents = latents if latents is not None else prefix_latents(model.mbae, ctx)
        batches = lambda epoch: _tensor_batches(latents, ctx.profile.batch_size,  # noqa: E731
                                                epoch_generator(ctx, epoch))
    elif source == "cloze":
        batches = lambda epoch: _cloze_latent_batches(model.mbae, ctx, epoch)  # noqa: E731
    else:
        raise ValueError(f"source must be 'prefix' or 'cloze', not {source!r}")
    p = ctx.profile.replace(**changes)
    name = f"denoiser-{p.denoiser}-{p.prediction}-{source}"
    history = ctx.fit(model, name, model.denoiser.parameters(), batches, model.diffusion_loss,
                      epochs or p.stage2_epochs,
                      {"stage": 2, "mbae": state_fingerprint(mbae), "source": source,
                       "profile": p.to_dict()})
    return model, history


def finetune_decoder(model: FatsMB, ctx: Context, epochs: int | None = None,
                     latents: dict | None = None) -> History:
    """Stage 3 (Algorithm 1, lines 23–28): encoder and denoiser frozen, the decoder is
    fine-tuned with next-item cross-entropy on z_0 sampled from z_∅ of every training prefix.

    NOTE: Algorithm 1 uses each sequence's last item only; we use every training prefix
    (the next-item signal that makes SASRec strong), measured in notebook 04.
    """
    _freeze(model.mbae.encoder)
    _freeze(model.denoiser)
    model.mbae.decoder.requires_grad_(True)  # stage 2 froze the whole MBAE
    latents = latents if latents is not None else prefix_latents(model.mbae, ctx)
    tensors = {key: latents[key] for key in ("z_null", "behavior", "target")}
    name = "decoder-" + state_fingerprint(model.denoiser)
    return ctx.fit(model, name, model.mbae.decoder.parameters(),
                   lambda epoch: _tensor_batches(tensors, ctx.profile.batch_size,
                                                 epoch_generator(ctx, epoch)),
                   model.loss, epochs or ctx.profile.stage3_epochs,
                   {"stage": 3, "mbae": state_fingerprint(model.mbae.encoder),
                    "profile": ctx.profile.to_dict()})
