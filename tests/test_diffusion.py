"""Tests for fatsmb_lib.models.diffusion: schedules, Eq. 15, Eq. 5 (DDIM with η), Eq. 16, Eq. 17."""
import math

import numpy as np
import pytest
import torch

from fatsmb_lib.models.diffusion import (
    DiffusionConfig,
    LatentDiffusion,
    cosine_betas,
    exp_betas,
    extract,
    linear_betas,
    oracle_denoiser,
)

B, D = 6, 5


def hand_alpha_bar(betas):
    """ᾱ_t = ∏_{s≤t}(1 − β_s), written as a plain running product in float64."""
    out, running = [], 1.0
    for beta in betas.double().tolist():
        running *= 1.0 - beta
        out.append(running)
    return torch.tensor(out, dtype=torch.float64)


PAPER = dict(T=200, schedule="exp", stride=20, eta=0.0, prediction="eps", p_uncond=0.2, omega=1.0,
             n_samples=1, sample_average="scores")


def make_diffusion(**kw):
    return LatentDiffusion(DiffusionConfig(**{**PAPER, **kw})).double()


# ----------------------------------------------------------------------------- schedules


def test_linear_betas_endpoints_scaled_by_1000_over_T():
    betas = linear_betas(200).double()
    assert betas.shape == (200,) and linear_betas(200).dtype == torch.float32
    assert betas[0].item() == pytest.approx(1e-4 * 1000 / 200, rel=1e-6)
    assert betas[-1].item() == pytest.approx(0.02 * 1000 / 200, rel=1e-6)
    steps = betas.diff()
    assert torch.allclose(steps, steps[0].expand_as(steps), rtol=1e-4)


def test_cosine_alpha_bar_monotone_in_unit_interval_and_follows_cos2():
    T, s = 50, 0.008
    alpha_bar = hand_alpha_bar(cosine_betas(T, s=s))
    assert (alpha_bar.diff() < 0).all()
    assert (alpha_bar > 0).all() and (alpha_bar < 1).all()
    f = [math.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2 for u in range(T + 1)]
    expected = torch.tensor([f[u + 1] / f[0] for u in range(T)], dtype=torch.float64)
    # the last β is capped at max_beta, so compare before it
    assert torch.allclose(alpha_bar[:-1], expected[:-1], rtol=1e-5)


def test_exp_betas_first_and_last_match_formula():
    T, bmin, bmax = 200, 0.1, 10.0
    betas = exp_betas(T, bmin, bmax).double()
    first = 1 - math.exp(-bmin / T - 1 * (bmax - bmin) / (2 * T**2))
    last = 1 - math.exp(-bmin / T - (2 * T + 1) * (bmax - bmin) / (2 * T**2))
    assert betas[0].item() == pytest.approx(first, rel=1e-6)
    assert betas[-1].item() == pytest.approx(last, rel=1e-6)


def test_buffers_follow_the_schedule():
    diff = make_diffusion(T=30, schedule="exp")
    alpha_bar = hand_alpha_bar(exp_betas(30))
    assert torch.allclose(diff.alpha_bar, alpha_bar, rtol=1e-6)
    assert torch.allclose(diff.sqrt_alpha_bar, alpha_bar.sqrt(), rtol=1e-6)
    assert torch.allclose(diff.sqrt_one_minus_alpha_bar, (1 - alpha_bar).sqrt(), rtol=1e-6)
    assert torch.allclose(diff.alphas, 1 - diff.betas)


def test_extract_broadcasts_per_sample():
    a = torch.arange(10.0)
    t = torch.tensor([3, 0, 7])
    out = extract(a, t, (3, 4, 2))
    assert out.shape == (3, 1, 1)
    assert out.flatten().tolist() == [3.0, 0.0, 7.0]


@pytest.mark.parametrize("bad", [dict(schedule="quadratic"), dict(prediction="v"),
                                 dict(stride=0), dict(p_uncond=1.5),
                                 dict(eta=-0.1), dict(eta=1.5)])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        DiffusionConfig(**{**PAPER, **bad})


# ----------------------------------------------------------------------------- Eq. 15


def test_q_sample_matches_closed_form():
    torch.manual_seed(0)
    diff = make_diffusion(T=40, schedule="linear")
    alpha_bar = hand_alpha_bar(linear_betas(40))
    z0 = torch.randn(B, D, dtype=torch.float64)
    noise = torch.randn(B, D, dtype=torch.float64)
    t = torch.tensor([0, 1, 5, 17, 38, 39])
    expected = alpha_bar[t, None].sqrt() * z0 + (1 - alpha_bar[t, None]).sqrt() * noise
    assert torch.allclose(diff.q_sample(z0, t, noise), expected, rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------- Eq. 5 / DDIM


def test_ddim_step_eta0_is_eq5():
    torch.manual_seed(1)
    diff = make_diffusion(T=50, schedule="cosine")
    alpha_bar = diff.alpha_bar
    z_t, eps = torch.randn(B, D, dtype=torch.float64), torch.randn(B, D, dtype=torch.float64)
    t = torch.full((B,), 37)
    t_prev = torch.full((B,), 22)
    a_t, a_prev = alpha_bar[37], alpha_bar[22]
    x0 = (z_t - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    # Eq. 5 with α read as ᾱ: sqrt(ᾱ_prev/ᾱ_t)(z_t − sqrt(1−ᾱ_t) ε) + sqrt(1−ᾱ_prev) ε
    expected = (a_prev / a_t).sqrt() * (z_t - (1 - a_t).sqrt() * eps) + (1 - a_prev).sqrt() * eps
    assert torch.allclose(diff.ddim_step(z_t, eps, x0, t, t_prev), expected, atol=1e-12)
    # the final jump (t_prev = −1, ᾱ_{−1} = 1) lands on x̂_0
    last = diff.ddim_step(z_t, eps, x0, t, torch.full((B,), -1))
    assert torch.allclose(last, x0, atol=1e-12)


def test_ddim_step_eta_sigma_formula():
    torch.manual_seed(2)
    diff = make_diffusion(T=50, schedule="linear")
    betas, alpha_bar = diff.betas, diff.alpha_bar
    z_t, eps, noise = (torch.randn(B, D, dtype=torch.float64) for _ in range(3))
    x0 = torch.randn(B, D, dtype=torch.float64)
    t, t_prev, eta = 30, 12, 0.6
    a_t, a_prev = alpha_bar[t], alpha_bar[t_prev]
    sigma = eta * ((1 - a_prev) / (1 - a_t)).sqrt() * (1 - a_t / a_prev).sqrt()
    expected = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).sqrt() * eps + sigma * noise
    out = diff.ddim_step(z_t, eps, x0, torch.full((B,), t), torch.full((B,), t_prev), eta, noise)
    assert torch.allclose(out, expected, atol=1e-12)
    # η = 1 on a one-step jump is DDPM's posterior variance β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t)
    one_step = diff.ddim_step(z_t, torch.zeros_like(eps), torch.zeros_like(x0),
                              torch.full((B,), t), torch.full((B,), t - 1), 1.0, noise)
    posterior_var = betas[t] * (1 - alpha_bar[t - 1]) / (1 - alpha_bar[t])
    assert torch.allclose(one_step, posterior_var.sqrt() * noise, atol=1e-12)


def test_ddim_step_with_eta_needs_noise():
    diff = make_diffusion(T=10)
    z = torch.zeros(B, D, dtype=torch.float64)
    with pytest.raises(ValueError, match="noise"):
        diff.ddim_step(z, z, z, torch.full((B,), 5), torch.full((B,), 2), eta=0.5)


def test_timesteps_schedule():
    assert make_diffusion(T=200).timesteps(20) == list(range(199, 0, -20))
    assert make_diffusion(T=200).timesteps(20)[-1] == 19
    assert make_diffusion(T=10).timesteps(3) == [9, 6, 3, 0]
    assert make_diffusion(T=10).timesteps(10) == make_diffusion(T=10).timesteps(11) == [9]
    assert len(make_diffusion(T=200).timesteps(7)) == math.ceil(200 / 7)
    with pytest.raises(ValueError):
        make_diffusion(T=10).timesteps(0)


# ----------------------------------------------------------------------------- oracles


@pytest.mark.parametrize("prediction", ["eps", "x0"])
def test_oracle_returns_the_true_target_of_its_parameterisation(prediction):
    """The oracle is checked against the forward process itself, not against the sampler."""
    torch.manual_seed(5)
    diff = make_diffusion(T=100, prediction=prediction)
    z0, noise = torch.randn(B, D, dtype=torch.float64), torch.randn(B, D, dtype=torch.float64)
    t = torch.tensor([0, 1, 30, 60, 98, 99])
    z_t = diff.q_sample(z0, t, noise)
    out = oracle_denoiser(diff, z0)(z_t, t, None, None)
    assert torch.allclose(out, noise if prediction == "eps" else z0, atol=1e-10)
    # guided (Eq. 17) on the 2B stacked rows it returns the same pair for every ω
    eps, x0 = diff.guided_prediction(oracle_denoiser(diff, z0), z_t, t, z0, torch.ones(B).long(), 3.0)
    assert torch.allclose(eps, noise, atol=1e-8) and torch.allclose(x0, z0, atol=1e-8)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "exp"])
@pytest.mark.parametrize("prediction", ["eps", "x0"])
@pytest.mark.parametrize("stride", [1, 7, 20, 200])
def test_ddim_with_oracle_recovers_z0(schedule, prediction, stride):
    """The sampler is exact: given the oracle of its parameterisation it lands on z_0 (Eq. 5,
    deterministic and with η > 0, guided)."""
    torch.manual_seed(3)
    diff = make_diffusion(T=200, schedule=schedule, prediction=prediction)
    z0 = 2 * torch.randn(B, D, dtype=torch.float64)
    behavior = torch.arange(B) % 3
    for eta in (0.0, 0.7):
        out = diff.sample(oracle_denoiser(diff, z0), torch.zeros_like(z0), behavior, omega=2.0,
                          stride=stride, eta=eta, generator=torch.Generator().manual_seed(0))
        assert torch.allclose(out, z0, atol=1e-5)


@pytest.mark.parametrize("prediction", ["eps", "x0"])
def test_ddim_with_the_other_parameterisations_oracle_misses_z0(prediction):
    """The exactness check can fail: an oracle of the other parameterisation (the bug notebook
    03 once printed as max |z_0 − sampled| = 4.0) lands far from z_0."""
    other = "x0" if prediction == "eps" else "eps"
    diff, wrong = make_diffusion(prediction=prediction), make_diffusion(prediction=other)
    z0 = 2 * torch.randn(B, D, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    out = diff.sample(oracle_denoiser(wrong, z0), torch.zeros_like(z0), torch.ones(B).long(),
                      generator=torch.Generator().manual_seed(0))
    assert (out - z0).abs().max() > 0.5


def test_sample_trajectory_and_generator():
    diff = make_diffusion(T=50, stride=10)
    z_null = torch.randn(B, D, dtype=torch.float64)
    denoiser = lambda z_t, t, z_null, b: 0.3 * z_t + 0.1 * z_null + b[:, None]  # noqa: E731
    behavior = torch.arange(B) % 3
    z0, trajectory = diff.sample(denoiser, z_null, behavior, eta=0.5, return_trajectory=True,
                                 generator=torch.Generator().manual_seed(7))
    assert len(trajectory) == len(diff.timesteps()) + 1 == 6
    assert torch.equal(trajectory[-1], z0)
    z_T = torch.randn(z_null.shape, generator=torch.Generator().manual_seed(7), dtype=z0.dtype)
    assert torch.equal(trajectory[0], z_T)  # z_T ~ N(0, I) is the generator's first draw
    again = diff.sample(denoiser, z_null, behavior, eta=0.5,
                        generator=torch.Generator().manual_seed(7))
    other = diff.sample(denoiser, z_null, behavior, eta=0.5,
                        generator=torch.Generator().manual_seed(8))
    assert torch.equal(z0, again) and not torch.allclose(z0, other)


def test_sample_from_a_given_z_T_with_an_unconditional_network():
    """An x0-predicting network of (z_t, t) alone (DiffuRec's f_θ) sampled from a given z_T:
    the chain starts there, the network sees no conditions, and the oracle still lands on z_0
    (Eq. 5); guidance without conditions is refused."""
    diff = make_diffusion(T=50, stride=10, prediction="x0")
    z0 = torch.randn(B, D, dtype=torch.float64)
    seen = []
    oracle = oracle_denoiser(diff, z0)

    def unconditional(z_t, t, z_null, behavior):
        seen.append((z_null, behavior))
        return oracle(z_t, t, z_null, behavior)

    z_T = torch.randn(B, D, dtype=torch.float64)
    out, trajectory = diff.sample(unconditional, None, None, omega=0.0, eta=0.5, z_T=z_T,
                                  return_trajectory=True, generator=torch.Generator().manual_seed(0))
    assert trajectory[0] is z_T and seen == [(None, None)] * len(diff.timesteps())
    torch.testing.assert_close(out, z0)
    with pytest.raises(ValueError, match="needs the conditions"):
        diff.sample(unconditional, None, None, omega=1.0, z_T=z_T)


# ----------------------------------------------------------------------------- Eq. 17 (CFG)


class CountingDenoiser(torch.nn.Module):
    """A small behavior-dependent network that counts its calls."""

    def __init__(self, n_behaviors=3):
        super().__init__()
        self.lin = torch.nn.Linear(2 * D, D)
        self.emb = torch.nn.Embedding(n_behaviors + 1, D)
        self.calls = []

    def forward(self, z_t, t, z_null, behavior):
        self.calls.append(z_t.shape[0])
        return torch.tanh(self.lin(torch.cat([z_t, z_null], -1))) * (1 + t[:, None] / 100) \
            + self.emb(behavior)


@pytest.mark.parametrize("prediction", ["eps", "x0"])
def test_guided_prediction_eq17(prediction):
    torch.manual_seed(4)
    diff = make_diffusion(T=100, prediction=prediction)
    net = CountingDenoiser().double()
    z_t, z_null = torch.randn(B, D, dtype=torch.float64), torch.randn(B, D, dtype=torch.float64)
    t = torch.tensor([0, 10, 50, 99, 3, 70])
    behavior = torch.tensor([1, 2, 3, 1, 0, 2])
    with torch.no_grad():
        eps_c, x0_c = diff.predict_eps_x0(net, z_t, t, z_null, behavior)
        eps_u, x0_u = diff.predict_eps_x0(net, z_t, t, z_null, torch.zeros_like(behavior))
        eps0, x00 = diff.guided_prediction(net, z_t, t, z_null, behavior, omega=0.0)
        assert torch.allclose(eps0, eps_c) and torch.allclose(x00, x0_c)
        for omega in (1.0, 2.0, 5.0):
            net.calls.clear()
            eps, x0 = diff.guided_prediction(net, z_t, t, z_null, behavior, omega)
            assert net.calls == [2 * B]  # both branches in ONE stacked call
            assert torch.allclose(eps, (1 + omega) * eps_c - omega * eps_u, atol=1e-10)
            assert torch.allclose(x0, (1 + omega) * x0_c - omega * x0_u, atol=1e-10)
            # (ε̂, x̂_0) stay a consistent pair of Eq. 15 for this z_t
            rebuilt = diff.q_sample(x0, t, eps)
            assert torch.allclose(rebuilt, z_t, atol=1e-10)


def test_predict_eps_x0_converts_the_network_output():
    diff_eps, diff_x0 = make_diffusion(T=100), make_diffusion(T=100, prediction="x0")
    z_t = torch.randn(B, D, dtype=torch.float64)
    out = torch.randn(B, D, dtype=torch.float64)
    t = torch.tensor([0, 1, 2, 50, 98, 99])
    net = lambda *args: out  # noqa: E731
    a = diff_eps.alpha_bar[t, None]
    eps, x0 = diff_eps.predict_eps_x0(net, z_t, t, None, None)
    assert torch.equal(eps, out)
    assert torch.allclose(x0, (z_t - (1 - a).sqrt() * out) / a.sqrt(), atol=1e-10)
    eps, x0 = diff_x0.predict_eps_x0(net, z_t, t, None, None)
    assert torch.equal(x0, out)
    assert torch.allclose(eps, (z_t - a.sqrt() * out) / (1 - a).sqrt(), atol=1e-10)


# ----------------------------------------------------------------------------- Eq. 16


class RecordingDenoiser(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.5, dtype=torch.float64))
        self.seen = {}

    def forward(self, z_t, t, z_null, behavior):
        self.seen = dict(z_t=z_t, t=t, behavior=behavior)
        return self.w * z_t + 0.1 * z_null + 0.01 * behavior[:, None]


@pytest.mark.parametrize("p_uncond,expect_null", [(1.0, True), (0.0, False)])
def test_training_loss_condition_dropout(p_uncond, expect_null):
    diff = make_diffusion(T=50, p_uncond=p_uncond)
    net = RecordingDenoiser()
    behavior = torch.randint(1, 4, (64,))
    z = torch.randn(64, D, dtype=torch.float64)
    diff.training_loss(net, z, z, behavior, generator=torch.Generator().manual_seed(0))
    seen = net.seen["behavior"]
    assert (seen == 0).all() if expect_null else torch.equal(seen, behavior)


def test_training_loss_drops_about_p_uncond():
    diff = make_diffusion(T=50, p_uncond=0.2)
    net = RecordingDenoiser()
    n = 20000
    z = torch.zeros(n, 1, dtype=torch.float64)
    diff.training_loss(net, z, z, torch.ones(n, dtype=torch.long),
                       generator=torch.Generator().manual_seed(0))
    assert abs((net.seen["behavior"] == 0).double().mean().item() - 0.2) < 0.01


@pytest.mark.parametrize("prediction", ["eps", "x0"])
def test_training_loss_equals_hand_mse(prediction):
    T = 50
    diff = make_diffusion(T=T, schedule="linear", p_uncond=0.3, prediction=prediction)
    alpha_bar = hand_alpha_bar(linear_betas(T))
    net = RecordingDenoiser()
    z_b, z_null = torch.randn(B, D, dtype=torch.float64), torch.randn(B, D, dtype=torch.float64)
    behavior = torch.tensor([1, 2, 3, 1, 2, 3])
    loss = diff.training_loss(net, z_b, z_null, behavior,
                              generator=torch.Generator().manual_seed(5))
    # replay the documented draws: t, then ε, then the dropout uniforms
    g = torch.Generator().manual_seed(5)
    t = torch.randint(0, T, (B,), generator=g)
    noise = torch.randn(B, D, generator=g, dtype=torch.float64)
    dropped = torch.rand(B, generator=g) < 0.3
    z_t = alpha_bar[t, None].sqrt() * z_b + (1 - alpha_bar[t, None]).sqrt() * noise
    b = torch.where(dropped, 0, behavior)
    out = 0.5 * z_t + 0.1 * z_null + 0.01 * b[:, None]
    target = noise if prediction == "eps" else z_b
    expected = ((out - target) ** 2).mean()
    assert torch.equal(net.seen["t"], t) and torch.equal(net.seen["behavior"], b)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert net.w.grad is not None and net.w.grad != 0


def test_schedules_are_valid_variances():
    for fn in (linear_betas, cosine_betas, exp_betas):
        betas = fn(200).numpy()
        assert np.isfinite(betas).all() and (betas > 0).all() and (betas < 1).all()


def test_paper_timesteps_are_ten_jumps_from_the_noisiest_state():
    assert make_diffusion().timesteps() == list(range(199, 0, -20))
