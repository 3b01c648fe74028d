"""Denoisers ε_θ(z_t, t, z_∅, b) for the latent diffusion (Section 3.3, Eqs. 18-23).

Three variants, the denoiser ablation of Table 4: ``MLPDenoiser`` ("w MLP"), ``AdaLNDenoiser``
("w AdaLN": MCGLN with its mixture of experts replaced by a plain MLP) and ``MCGLNDenoiser``
(Multi-Condition Guided Layer Norm). All share one signature::

    forward(z_t (B, D), t (B,) long, z_null (B, D), behavior (B,) long, 0 = ∅) -> (B, D)

Symbol map (code ↔ paper)::

    z_t                        ↔ z_t              noised latent
    t                          ↔ t                diffusion timestep index
    z_null                     ↔ z_∅              behavior-agnostic latent (primary condition)
    behavior                   ↔ b_t              target behavior; 0 ↔ ∅
    e_t, e_b                   ↔ e_t, e_{b_t}     timestep / behavior embeddings (Eq. 23)
    alpha_s, beta_s, gamma_s   ↔ α_s, β_s, γ_s    gate, shift, scale of the z_∅ branch (Eq. 21)
    alpha_m, beta_m, gamma_m   ↔ α_t, β_t, γ_t    gate, shift, scale of the MoE branch (Eq. 22);
                                                  the paper's subscript t there is not the timestep
    n_shared                   ↔ m_s              shared experts e_s
    n_private                  ↔ m_p              private experts e_p^{b_t} per behavior
    gate_shared, gate_private  ↔ W_g              gate matrix (Eq. 18), w(x) = softmax(W_g x)
    d_model                    ↔ d = D            latent width

Shapes: B batch, D model width, Dh = denoiser_hidden_mult·D expert/MLP width, n_behaviors
behaviors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

DENOISER_KINDS = ("mcgln", "adaln", "mlp")
# the denoiser ablation (Table 4) as (kind, prediction) pairs: MCGLN with both targets, the
# ablations with the paper's ε
ABLATION = (("mcgln", "eps"), ("mcgln", "x0"), ("adaln", "eps"), ("mlp", "eps"))


# ----------------------------------------------------------------------------- small blocks


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of integer timesteps: [sin(t·f_k), cos(t·f_k)], f_k = P^(−k/(dim/2)).

    t (B,) -> (B, dim) float32.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period)
                      * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None, :]  # (B, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)  # (B, dim)


def _mlp(d_in: int, d_hidden: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(d_hidden, d_out))


class ConditionEmbedding(nn.Module):
    """e_t = MLP(sinusoid(t)) and e_b = Embedding(b), row 0 a learned null embedding e_∅."""

    def __init__(self, d_model: int, n_behaviors: int, d_hidden: int) -> None:
        super().__init__()
        self.d_model = d_model
        self.time_mlp = nn.Sequential(nn.Linear(d_model, d_hidden), nn.SiLU(),
                                      nn.Linear(d_hidden, d_model))
        self.behavior_emb = nn.Embedding(n_behaviors + 1, d_model)

    def forward(self, t: Tensor, behavior: Tensor) -> tuple[Tensor, Tensor]:
        sinusoid = timestep_embedding(t, self.d_model).to(self.behavior_emb.weight.dtype)
        return self.time_mlp(sinusoid), self.behavior_emb(behavior)  # (B, D) each


def _uniform_(param: Tensor, fan_in: int) -> Tensor:
    """nn.Linear's default initialisation U(−1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return nn.init.uniform_(param, -bound, bound)


class BehaviorMoE(nn.Module):
    """CGC mixture of experts with the target behavior as a hard router (Eqs. 18-20).

    MoE(x, b) = ∑_k w_k(x) e_k(x) over the m_s shared experts and behavior b's m_p private
    experts, w(x) = softmax(W_g x) over those m_s + m_p experts (Eqs. 18-19); for b = ∅ only the
    shared experts, softmax over their m_s logits (Eq. 20). Experts are MLPs D -> Dh -> D stored
    as batched tensors: shared ``(m_s, D, Dh)``, private ``(n_behaviors, m_p, D, Dh)``.

    The hard router by grouping: the shared experts run on all rows, each behavior's private
    experts on that behavior's rows only (a few index operations per behavior), so other
    behaviors' private experts get exactly zero gradient and no row pays for experts it does
    not use. Each group is two matrix products (``_mixture``). NOTE: the first version ran all
    m_s + n_behaviors·m_p experts on every row and zeroed the unused ones' weights; with the
    defaults (m_s = 2, m_p = 1, 3 behaviors) grouping skips 2 of 5 experts on a row with a
    behavior and 3 of 5 on a row with ∅, i.e. half of them in guided sampling.

    NOTE: Eq. 18 prints one W_g ∈ R^{(m_s+m_p)×d}; we give each condition its own gate (CGC's
    "customized" per-task gates, as the authors' code does): ``gate_shared`` (n_behaviors+1, D,
    m_s) with row 0 for ∅, ``gate_private`` (n_behaviors, D, m_p). Gates start at zero, i.e. a
    uniform mixture.
    """

    def __init__(self, d_model: int, d_hidden: int, n_behaviors: int, n_shared: int,
                 n_private: int, dropout: float) -> None:
        super().__init__()
        D, Dh = d_model, d_hidden
        self.n_behaviors, self.n_shared, self.n_private = n_behaviors, n_shared, n_private
        self.shared_w1 = nn.Parameter(_uniform_(torch.empty(n_shared, D, Dh), D))
        self.shared_b1 = nn.Parameter(_uniform_(torch.empty(n_shared, Dh), D))
        self.shared_w2 = nn.Parameter(_uniform_(torch.empty(n_shared, Dh, D), Dh))
        self.shared_b2 = nn.Parameter(_uniform_(torch.empty(n_shared, D), Dh))
        self.private_w1 = nn.Parameter(_uniform_(torch.empty(n_behaviors, n_private, D, Dh), D))
        self.private_b1 = nn.Parameter(_uniform_(torch.empty(n_behaviors, n_private, Dh), D))
        self.private_w2 = nn.Parameter(_uniform_(torch.empty(n_behaviors, n_private, Dh, D), Dh))
        self.private_b2 = nn.Parameter(_uniform_(torch.empty(n_behaviors, n_private, D), Dh))
        self.gate_shared = nn.Parameter(torch.zeros(n_behaviors + 1, D, n_shared))
        self.gate_private = nn.Parameter(torch.zeros(n_behaviors, D, n_private))
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)

    def gate_weights(self, x: Tensor, behavior: Tensor) -> Tensor:
        """w(x) (Eqs. 18, 20): (B, m_s + m_p), shared first; private weights are 0 where b = ∅."""
        B, D = x.shape
        # the logits of every condition's gate in one product, then each row keeps its own
        # (cheaper than gathering a (D, m) gate matrix per row); in x's dtype under autocast
        shared = (x @ self.gate_shared.permute(1, 0, 2).reshape(D, -1)).to(x.dtype)
        private = (x @ self.gate_private.permute(1, 0, 2).reshape(D, -1)).to(x.dtype)
        rows = torch.arange(B, device=x.device)
        logits_shared = shared.view(B, -1, self.n_shared)[rows, behavior]  # (B, m_s)
        logits_private = private.view(B, -1, self.n_private)[rows, (behavior - 1).clamp(min=0)]
        logits_private = logits_private.masked_fill((behavior == 0)[:, None], float("-inf"))  # (B, m_p)
        return torch.cat([logits_shared, logits_private], dim=-1).softmax(dim=-1)

    def _mixture(self, x: Tensor, weights: Tensor, w1: Tensor, b1: Tensor, w2: Tensor,
                 b2: Tensor) -> Tensor:
        """∑_k weights_k e_k(x) over K experts, e_k(x) = GELU(x W1_k + b1_k) W2_k + b2_k, as two
        matrix products: all K hidden layers at once, then their sum with each expert's hidden
        units scaled by its weight. x (n, D), weights (n, K); w1 (K, D, Dh), b1 (K, Dh),
        w2 (K, Dh, D), b2 (K, D) -> (n, D)."""
        n, D = x.shape
        K, _, Dh = w1.shape
        h = self.act(torch.addmm(b1.flatten(), x, w1.permute(1, 0, 2).reshape(D, K * Dh)))
        h = self.dropout(h).view(n, K, Dh)  # (n, K, Dh)
        # weights in h's dtype: under bf16 autocast a mixed bf16 x fp32 product of n·K·Dh
        # elements would take the slow, unvectorised path
        scaled = (weights.to(h.dtype)[:, :, None] * h).view(n, K * Dh)
        return torch.addmm(weights @ b2, scaled, w2.reshape(K * Dh, D))  # (n, D)

    def forward(self, x: Tensor, behavior: Tensor) -> Tensor:
        """Eq. 19 / Eq. 20. x (B, D), behavior (B,) long with 0 = ∅ -> (B, D).

        The shared experts run on every row; behavior j's private experts only on the rows
        with b = j (a row of b = ∅ has none), so no row computes an expert it does not use.
        """
        gates = self.gate_weights(x, behavior)  # (B, m_s + m_p)
        s = self.n_shared
        out = self._mixture(x, gates[:, :s], self.shared_w1, self.shared_b1, self.shared_w2,
                            self.shared_b2).to(x.dtype)  # (B, D); summed in x's dtype (fp32)
        for j in range(self.n_behaviors):  # private experts of behavior j + 1
            rows = (behavior == j + 1).nonzero()[:, 0]  # (B_j,)
            if rows.numel() > 0:
                private = self._mixture(x[rows], gates[rows, s:], self.private_w1[j],
                                        self.private_b1[j], self.private_w2[j], self.private_b2[j])
                out = out.index_add(0, rows, private.to(x.dtype))
        return out


class MCGLNBlock(nn.Module):
    """One MCGLN block (Eqs. 21-23), adaLN-Zero style.

        (α_s, β_s, γ_s, α_t, β_t, γ_t) = MLP(e_t + e_b)                            (Eq. 23)
        ẑ     = z + α_s ⊙ MLP(Concat(LN(z)·(1 + γ_s) + β_s, z_∅))                  (Eq. 21)
        z_out = ẑ + α_t ⊙ MoE(LN(ẑ)·(1 + γ_t) + β_t, b)                            (Eq. 22)

    NOTE: Eq. 21 is printed "ẑ_t = z_t + α_s MLP(LN(Concat(z_t + z_∅))) γ_s + β_s", which leaves
    open where LN, γ_s, β_s apply and whether "+" inside Concat is a sum. We follow the text
    ("concatenate [z_∅] with the noisy latent z_t and map through an MLP") and DESIGN.md: z_∅ is
    concatenated with the adaptively normalised z_t, mapped by an MLP and gated by α_s, the same
    reading as the authors' code. The scale is (1 + γ) so that γ = 0 is identity scale (DiT).
    The modulation's last layer starts at zero (DiT's adaLN-Zero): all α = 0, so a fresh block
    is exactly the identity. With ``use_moe=False`` the MoE is a plain MLP (the AdaLN ablation).
    """

    def __init__(self, d_model: int, d_hidden: int, n_behaviors: int, n_shared: int,
                 n_private: int, dropout: float, use_moe: bool = True) -> None:
        super().__init__()
        D = d_model
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(D, 6 * D))
        nn.init.zeros_(self.modulation[-1].weight)
        nn.init.zeros_(self.modulation[-1].bias)
        self.norm_s = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.mix = _mlp(2 * D, d_hidden, D, dropout)  # the MLP of Eq. 21
        self.norm_m = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.use_moe = use_moe
        self.ffn = (BehaviorMoE(D, d_hidden, n_behaviors, n_shared, n_private, dropout)
                    if use_moe else _mlp(D, d_hidden, D, dropout))

    def forward(self, z: Tensor, cond: Tensor, z_null: Tensor, behavior: Tensor,
                cond_index: Tensor | None = None) -> Tensor:
        """z, z_null (B, D); cond = e_t + e_b (B, D); behavior (B,) -> (B, D).

        With ``cond_index`` (B,), ``cond`` holds only the U distinct conditions (U, D) and row i
        uses ``cond[cond_index[i]]``: Eq. 23 then runs on U rows instead of B.
        """
        modulation = self.modulation(cond)  # (U or B, 6D), Eq. 23
        if cond_index is not None:
            modulation = modulation[cond_index]  # (B, 6D)
        # in z's dtype: the products below are (B, D) and fp32 under bf16 autocast
        alpha_s, beta_s, gamma_s, alpha_m, beta_m, gamma_m = modulation.to(z.dtype).chunk(6, dim=-1)
        h = torch.addcmul(beta_s, self.norm_s(z), 1 + gamma_s)
        z = torch.addcmul(z, alpha_s, self.mix(torch.cat([h, z_null], dim=-1)).to(z.dtype))  # Eq. 21
        h = torch.addcmul(beta_m, self.norm_m(z), 1 + gamma_m)
        h = self.ffn(h, behavior) if self.use_moe else self.ffn(h)
        return torch.addcmul(z, alpha_m, h.to(z.dtype))  # Eq. 22


# ----------------------------------------------------------------------------- config


@dataclass(kw_only=True)
class DenoiserConfig:
    """Denoiser hyperparameters, built by ``Profile.config`` (paper: d = 64, 2 MCGLN
    layers); ``n_behaviors`` comes from the data. Fields carry the profile's names."""

    denoiser: str  # "mcgln" | "adaln" | "mlp" (Table 4)
    d_model: int  # D, equal to the encoder width
    n_denoiser_layers: int  # MCGLN/AdaLN blocks, or hidden layers of the MLP denoiser
    n_behaviors: int
    n_shared: int  # m_s
    n_private: int  # m_p
    denoiser_hidden_mult: int  # Dh = denoiser_hidden_mult · D
    denoiser_dropout: float

    def __post_init__(self) -> None:
        if self.denoiser not in DENOISER_KINDS:
            raise ValueError(f"denoiser must be one of {DENOISER_KINDS}, got {self.denoiser!r}")
        if self.d_model % 2:
            raise ValueError("d_model must be even: the timestep embedding pairs sin and cos")
        if self.n_behaviors < 1 or self.n_shared < 1 or self.n_private < 1:
            raise ValueError("n_behaviors, n_shared and n_private must be >= 1 "
                             "(b = ∅ needs at least one shared expert)")

    @property
    def d_hidden(self) -> int:
        return self.denoiser_hidden_mult * self.d_model


# ----------------------------------------------------------------------------- denoisers


class MLPDenoiser(nn.Module):
    """"w MLP" ablation: ε_θ = MLP(Concat(z_t, z_∅, e_t, e_b))."""

    def __init__(self, cfg: DenoiserConfig) -> None:
        super().__init__()
        D, Dh = cfg.d_model, cfg.d_hidden
        self.cond = ConditionEmbedding(D, cfg.n_behaviors, Dh)
        p = cfg.denoiser_dropout
        layers: list[nn.Module] = [nn.Linear(4 * D, Dh), nn.GELU(), nn.Dropout(p)]
        for _ in range(cfg.n_denoiser_layers - 1):
            layers += [nn.Linear(Dh, Dh), nn.GELU(), nn.Dropout(p)]
        self.net = nn.Sequential(*layers, nn.Linear(Dh, D))

    def forward(self, z_t: Tensor, t: Tensor, z_null: Tensor, behavior: Tensor) -> Tensor:
        e_t, e_b = self.cond(t, behavior)  # (B, D) each
        return self.net(torch.cat([z_t, z_null, e_t, e_b], dim=-1))  # (B, D)


class MCGLNDenoiser(nn.Module):
    """MCGLN denoiser: n_layers × ``MCGLNBlock`` on the residual stream z_t, then a linear readout.

    The readout starts at zero (as in DiT), so a fresh denoiser predicts 0: for ε-prediction
    that is the mean of ε (initial loss = Var ε = 1) instead of a random function of z_t.
    NOTE: no LayerNorm before the readout (DiT has one). LN discards the scale of the stream,
    which ε̂ must follow (ε̂ ≈ z_t at high noise, and DDIM multiplies ε̂'s error by
    sqrt(1−ᾱ_t)/sqrt(ᾱ_t)). On the toy task of tests/test_denoiser.py (seed 0) the ε-prediction
    samples then landed 12.8 from z_b on average (‖z_0‖ ≈ 14 against ‖z_b‖ ≈ 5) instead of 1.35,
    and x0-prediction 1.11 instead of 0.99.
    """

    def __init__(self, cfg: DenoiserConfig, use_moe: bool = True) -> None:
        super().__init__()
        D = cfg.d_model
        self.n_behaviors = cfg.n_behaviors
        self.cond = ConditionEmbedding(D, cfg.n_behaviors, cfg.d_hidden)
        self.blocks = nn.ModuleList([
            MCGLNBlock(D, cfg.d_hidden, cfg.n_behaviors, cfg.n_shared, cfg.n_private,
                       cfg.denoiser_dropout, use_moe=use_moe)
            for _ in range(cfg.n_denoiser_layers)
        ])
        self.out = nn.Linear(D, D)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, z_t: Tensor, t: Tensor, z_null: Tensor, behavior: Tensor) -> Tensor:
        # the condition e_t + e_b and the modulations (Eq. 23) depend on (t, b) alone: compute
        # them once per distinct pair (in DDIM sampling, one t and n_behaviors + 1 values of b)
        pairs, cond_index = torch.unique(t * (self.n_behaviors + 1) + behavior, return_inverse=True)
        e_t, e_b = self.cond(pairs // (self.n_behaviors + 1), pairs % (self.n_behaviors + 1))
        cond = e_t + e_b  # (U, D), the input of Eq. 23
        z = z_t
        for block in self.blocks:
            z = block(z, cond, z_null, behavior, cond_index)  # (B, D)
        return self.out(z)  # (B, D)


class AdaLNDenoiser(MCGLNDenoiser):
    """"w AdaLN" ablation: the MCGLN denoiser with each MoE replaced by a plain MLP."""

    def __init__(self, cfg: DenoiserConfig) -> None:
        super().__init__(cfg, use_moe=False)


_DENOISERS = {"mcgln": MCGLNDenoiser, "adaln": AdaLNDenoiser, "mlp": MLPDenoiser}


def build_denoiser(cfg: DenoiserConfig) -> nn.Module:
    """The denoiser named by ``cfg.denoiser``."""
    return _DENOISERS[cfg.denoiser](cfg)
