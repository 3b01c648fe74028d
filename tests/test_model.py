"""FatsMB's latent space options: what the diffusion generates, and the way back."""
import pytest
import torch
from test_contract import fatsmb, prefix_batch  # the tiny FatsMB and a prefix batch
from torch import nn

from fatsmb_lib.models.diffusion import DiffusionConfig, LatentDiffusion
from fatsmb_lib.models.fatsmb import FatsMB, LatentSpace

D = 6


def latents(n=500, seed=0):
    g = torch.Generator().manual_seed(seed)
    shared = 5.0 + 3.0 * torch.randn(n, D, generator=g)          # big shared part
    return shared + 0.2 * torch.randn(n, D, generator=g), shared  # z_b, z_null


@pytest.mark.parametrize("target", ["z_b", "offset"])
@pytest.mark.parametrize("scaling", ["none", "standard"])
def test_encode_then_decode_is_the_identity(target, scaling):
    z_b, z_null = latents()
    space = LatentSpace(D, target, scaling).fit_(z_b, z_null)
    assert torch.allclose(space.decode(space.encode(z_b, z_null), z_null), z_b, atol=1e-5)


def test_standard_scaling_gives_unit_variance_coordinates():
    z_b, z_null = latents()
    for target, raw in (("z_b", z_b), ("offset", z_b - z_null)):
        x_0 = LatentSpace(D, target, "standard").fit_(z_b, z_null).encode(z_b, z_null)
        assert torch.allclose(x_0.mean(0), torch.zeros(D), atol=1e-4)
        assert torch.allclose(x_0.std(0), torch.ones(D), atol=1e-4)
        assert not torch.allclose(raw.std(0), torch.ones(D), atol=0.1)  # it was not before
    plain = LatentSpace(D, "z_b", "none").fit_(z_b, z_null)
    assert torch.equal(plain.encode(z_b, z_null), z_b) and torch.equal(plain.condition(z_null), z_null)


def test_offset_sampler_that_predicts_nothing_returns_z_null():
    z_b, z_null = latents(8)
    diffusion = LatentDiffusion(DiffusionConfig(T=50, schedule="exp", stride=10, eta=0.0,
                                                prediction="x0", p_uncond=0.2, omega=1.0,
                                                n_samples=1, sample_average="scores"))
    zero = lambda z_t, t, c, b: torch.zeros_like(z_t)  # noqa: E731  (x̂_0 = 0)
    for target, expected in (("offset", z_null), ("z_b", torch.zeros_like(z_null))):
        model = FatsMB(nn.Identity(), zero, diffusion, LatentSpace(D, target, "none"))
        out = model.generate(z_null, torch.ones(8, dtype=torch.long), torch.Generator().manual_seed(0))
        assert torch.allclose(out, expected, atol=1e-5)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="diffusion_target"):
        LatentSpace(D, "z", "none")
    with pytest.raises(ValueError, match="latent_scaling"):
        LatentSpace(D, "z_b", "minmax")


@pytest.mark.parametrize("average", ["scores", "latents"])
def test_k_samples_are_averaged_as_the_setting_says(average):
    """score_all with n_samples = K equals K single-sample draws from the same generator state,
    averaged over their decoded scores or over their latents before decoding."""
    model, batch, K = fatsmb().eval(), prefix_batch(), 4
    g = torch.Generator().manual_seed(0)
    for param in model.parameters():  # random weights: at initialisation every score is 0
        param.data = torch.randn(param.shape, generator=g)
    model.use_sampler(n_samples=K, sample_average=average, eta=0.0)
    with torch.no_grad():
        got = model.score_all(batch, torch.Generator().manual_seed(5))
        z_null = model.mbae.behavior_agnostic(batch["items"], batch["behaviors"])  # (B, D)
        z_0 = model.generate(z_null.repeat_interleave(K, 0),
                             batch["target_behavior"].repeat_interleave(K, 0),
                             torch.Generator().manual_seed(5)).view(len(z_null), K, -1)
        want = (model.mbae.decode(z_0.mean(1)) if average == "latents"
                else torch.stack([model.mbae.decode(z_0[:, k]) for k in range(K)]).mean(0))
        single = model.mbae.decode(z_0[:, 0])
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, single, atol=1e-3)  # K samples differ from one
