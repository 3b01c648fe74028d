# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · Notation and primer
#
# This notebook only has text, so there is nothing to run. Keep it open beside the others.
# - The [**Glossary**](#glossary) lists every symbol the notebooks use, with the name it has
#   in `fatsmb_lib` and where the paper introduces it. Where the paper uses one letter for two
#   things, the glossary says how we write each.
# - The **primers** give the background the paper assumes, one or two paragraphs each, with
#   the key equation and the original paper:
#   [Cloze (BERT4Rec)](#primer-cloze) ·
#   [RoPE](#primer-rope) ·
#   [DDPM and DDIM](#primer-ddpm-ddim) ·
#   [classifier-free guidance](#primer-cfg) ·
#   [adaLN and DiT](#primer-adaln-dit).
#
# **Paper:** "From Agnostic to Specific: Latent Preference Diffusion for Multi-Behavior
# Sequential Recommendation" (FatsMB, KDD '26). "Eq. n" means the paper's equation n, and
# "[n]" means its reference n.
# **The course:** [01 · entropy](01_entropy_analysis.ipynb) →
# [02 · MBAE and BaRoPE](02_mbae_barope.ipynb) →
# [03 · latent diffusion and MCGLN](03_latent_diffusion_mcgln.ipynb) →
# [04 · fine-tuning and evaluation](04_finetune_evaluate.ipynb).

# %% [markdown]
# <a id="glossary"></a>
# ## Glossary
#
# Each table covers one part of the model, in the order the notebooks meet it. The **code**
# column gives the name in `fatsmb_lib` (a profile field such as `rho` is set with
# `open_run(..., rho=0.4)`). Tensor shapes use the same letters everywhere: `B` batch, `L`
# sequence length, `D` model width, `H` heads, `N` items.
#
# ### Data and sequences (Section 2.1; notebook 01)
#
# | symbol | meaning | code | paper |
# |---|---|---|---|
# | U, \|U\| | users, and how many there are | `data.n_users`; ids 0..n_users−1, raw ids in `data.user_keys` | Sec. 2.1 |
# | V, \|V\| = N | items, and how many there are | `data.n_items`, `N`; ids 1..N, 0 = padding, N+1 = [mask] (`data.mask_item`) | Sec. 2.1 |
# | B, \|B\| | behavior types, and how many there are | `data.n_behaviors`, `data.behavior_names`; ids 1..\|B\|, 0 = padding, \|B\|+1 = [mask] | Sec. 2.1 |
# | S_u | user u's time-ordered sequence of ⟨item, behavior⟩ pairs | a batch's `items`, `behaviors` (B, L), left-padded: the newest token is at column L−1 | Sec. 2.1 |
# | ⟨v_i, b_i⟩ | the i-th interaction: item v_i under behavior b_i | `items[:, i]`, `behaviors[:, i]` | Sec. 2.1 |
# | L | maximum sequence length (50) | `max_len`, `L` | Sec. 2.1 |
# | b, b_t | the **target behavior**, the one to recommend for (Sec. 3.3 and Alg. 2 write b_t; its t is not a timestep) | `behavior`, `target_behavior` (B,) | Sec. 3.2–3.3 |
# | ∅ | the null behavior condition, "no behavior given" | behavior id 0 in the denoiser | Eqs. 17, 20 |
#
# ### Entropy (Table 1, Appendix B; notebook 01)
#
# | symbol | meaning | code | paper |
# |---|---|---|---|
# | I, B | the item and the behavior of a random interaction (empirical frequencies) | `entropy_table(items, behaviors)` | App. B |
# | H(I), H(B) | entropies, in nats | keys `"H(I)"`, `"H(B)"` | Table 1 |
# | H(B\|I), H(I\|B) | conditional entropies: how uncertain the behavior is once the item is known, and the other way round | keys "H(B\|I)" and "H(I\|B)" of `entropy_table` | Table 1 |
# | I(I;B) | mutual information, H(B) − H(B\|I) = H(I) − H(I\|B) (the paper writes I(I, B)) | key `"I(I;B)"` | Table 1 |
#
# ### Stage 1: the MBAE (Section 3.1, Appendix C; notebook 02)
#
# | symbol | meaning | code | paper |
# |---|---|---|---|
# | d | width of every embedding and latent (64) | `d_model`, `D` | Eqs. 8–9 |
# | h, d_k | attention heads (2) and the width of one head, d_k = d/h | `n_heads` (`H`), `d_head` | Eqs. 7–8 |
# | l | Transformer layers (2) | `n_layers` | Sec. 3.1 |
# | Q, K, V; W^Q, W^K, W^V, W^O | queries, keys, values and their projections | `MultiHeadSelfAttention.qkv` (the three at once) and `.out` | Eqs. 7–8 |
# | e_{v_i}, e_{b_i}, e_{p_i} | item, behavior and position embeddings; h_i = e_v + e_b + e_p | `SequenceEncoder.item_embedding`, `.behavior_embedding`, `.position_embedding` (APE only); `SequenceEncoder.embed` | Eq. 9 |
# | h_i, H, h^l | the hidden state at position i, all of them (L × d), the output of the last layer l | `MBAE.encode(items, behaviors)` → (B, L, D) | Eq. 9, Alg. 1 |
# | m, n | the positions of a query and of a key | the column index 0..L−1 | Eqs. 10–11 |
# | θ_i | RoPE frequency of rotation pair i, θ_i = base^(−2i/d_k), base 10,000 | `kernels.rope_tables`, `rope_base` | Eq. 11 |
# | f(q, m), g(q, k, m−n) | RoPE: q rotated by the angles mθ_i; the attention score, which depends on m − n only | `kernels.rotate_pairs` (all heads at once; the textbook `apply_rope` is written out in notebook 02) | Eqs. 10–11, 24 |
# | a, b (in f′) | the behaviors of the query's and of the key's token | `behaviors` | Eqs. 12–13 |
# | h(·) | BaRoPE's behavior scaling: f′(q, a, m) = h(a)·f(q, m). Here one real value per rotation pair per head, h ≡ 1 at initialisation (the paper: "an MLP") | `BaRoPE` (`pair_scale_table`: h per pair; `forward`: h on both coordinates of each pair) | Eqs. 13, 28–30 |
# | ρ | Cloze item mask probability (0.2) | `rho`; `cloze_mask` | Sec. 3.1, Alg. 1, Fig. 8a |
# | σ | probability of also masking the behavior at a masked item (0.2); not DDPM's σ_t | `sigma` | Sec. 3.1, Fig. 8b |
# | [mask], v_[mask] | the mask token; the masked item the decoder must recover | `mask_item` (N+1), `mask_behavior` (\|B\|+1); the batch key `targets` | Eq. 14 |
# | z_b | **behavior-specific preference**: the encoder's output at a masked item whose behavior b stays visible | `z_b`; `MBAE.latents` | Sec. 3.1 |
# | z_∅ | **behavior-agnostic preference**: the output at a masked item whose behavior is masked too (the paper also prints it z_φ in Sec. 3.1 and z_θ in Sec. 3.4) | `z_null`; `MBAE.behavior_agnostic` | Secs. 3.1–3.2 |
# | φ, p_φ(z_b \| S_u) | the encoder and its parameters (ℰ in Algs. 1–2) | `MBAE.encoder` (a `SequenceEncoder`) | Eq. 14 |
# | ψ, q_ψ(v \| z_b) | the decoder and its parameters (𝒟 in Algs. 1–2): an MLP whose output is scored against the tied item embeddings | `MBAE.decoder` (a `Decoder`), `MBAE.decode` | Eq. 14 |
# | L_MBAE | the Cloze loss: cross-entropy of v_[mask] given z_b or z_∅ | `MBAE.loss` | Eq. 14 |
#
# ### Stage 2: latent diffusion (Sections 2.2, 3.2; notebook 03)
#
# | symbol | meaning | code | paper |
# |---|---|---|---|
# | T | diffusion steps (200) | `T` (profile), `LatentDiffusion.T` | Sec. 4.5.3 |
# | t | diffusion timestep. The code's index 0..T−1 is the paper's t = 1..T | `t` (B,) long | Eqs. 1–6 |
# | β_t | variance schedule of the forward process | `betas`; `schedule` (`"exp"`, `"linear"`, `"cosine"`) | Eq. 1 |
# | α_t | 1 − β_t | `alphas` | Eq. 3 |
# | ᾱ_t | ∏_{s≤t} α_s, the share of signal left at t (Eqs. 5 and 15 print α_t where ᾱ_t is meant) | `alpha_bar`, `sqrt_alpha_bar`, `sqrt_one_minus_alpha_bar` | Eqs. 3, 5, 15 |
# | ε | Gaussian noise, N(0, I) | `noise`, `eps` | Eqs. 15–16 |
# | θ, ε_θ | the denoiser's parameters; its noise prediction | the denoiser (`MCGLNDenoiser`, `AdaLNDenoiser`, `MLPDenoiser`) | Eq. 16 |
# | z_0 = z_0^b | the clean latent the diffusion generates: z_b in the paper, z_b − z_∅ under the offset target | `z0`, `x_0`; `LatentSpace.encode` | Eq. 15 |
# | z_t = z_t^b, z_T | the noised latent at step t; pure noise at T | `z_t`; `LatentDiffusion.q_sample` | Eq. 15, Alg. 2 |
# | ẑ_0 (x̂_0) | the clean latent predicted from z_t: (z_t − √(1−ᾱ_t)·ε_θ)/√ᾱ_t, or the network's output itself under x0-prediction | `x0`; `LatentDiffusion.predict_eps_x0` | Eq. 5 |
# | z_b − z_∅ | the **offset target** that `default` and `full` diffuse; z_∅ is added back after sampling | `diffusion_target="offset"`; `LatentSpace` | notebook 03 |
# | ε- / x0-prediction | what the network outputs: ε (the paper) or ẑ_0 (the authors' code, and our profiles) | `prediction="eps"` / `"x0"` | Eq. 16 |
# | p (p_uncond) | probability of replacing b by ∅ during training (0.2) | `p_uncond` | Sec. 3.2 |
# | ω | guidance strength | `omega` | Eq. 17, Fig. 8e |
# | ε*_θ | the guided prediction (1+ω)·ε_θ(z_t, t, z_∅, b) − ω·ε_θ(z_t, t, z_∅, ∅) | `LatentDiffusion.guided_prediction` | Eq. 17 |
# | Δt | DDIM step interval: T/Δt denoiser calls per sample (200/20 = 10) | `stride`; `LatentDiffusion.timesteps` | Sec. 4.5.4, Fig. 8d |
# | η | DDIM stochasticity: 0 = deterministic (Eq. 5, our profiles), 1 = DDPM's noise level; from the DDIM paper, not from FatsMB | `eta` | [42] |
# | σ_t | the noise scale of one reverse step (DDIM: proportional to η); not the Cloze σ | `sigma` inside `LatentDiffusion.ddim_step` | Eqs. 2–3 |
# | μ_θ | the predicted mean of a reverse step | not named: `ddim_step` computes the step directly | Eq. 2 |
# | L_DM, L_LDM | the diffusion losses (mean squared error) | `LatentDiffusion.training_loss`, `FatsMB.diffusion_loss` | Eqs. 4, 6, 16 |
#
# ### The MCGLN denoiser (Section 3.3; notebook 03)
#
# | symbol | meaning | code | paper |
# |---|---|---|---|
# | e_t | timestep embedding: an MLP of a sinusoidal code of t | first output of `ConditionEmbedding` (`time_mlp`) | Eq. 23 |
# | e_b (e_{b_t}) | behavior embedding of the condition; row 0 is a learned e_∅ | `ConditionEmbedding.behavior_emb` | Eq. 23 |
# | γ_s, ξ_s, g_s | scale, shift and gate of the z_∅ branch (the paper: γ_s, β_s, α_s) | `gamma_s`, `beta_s`, `alpha_s` in `MCGLNBlock.forward` | Eqs. 21, 23 |
# | γ_m, ξ_m, g_m | scale, shift and gate of the MoE branch (the paper: γ_t, β_t, α_t) | `gamma_m`, `beta_m`, `alpha_m` | Eqs. 22–23 |
# | ẑ_t | the latent after the z_∅ branch | `z` between Eqs. 21 and 22 in `MCGLNBlock.forward` | Eq. 21 |
# | LN | layer norm without a learned affine (the modulations replace it) | `norm_s`, `norm_m` | Eqs. 21–22 |
# | m_s, m_p | shared experts, and private experts per behavior (2 and 1) | `n_shared`, `n_private` | Eq. 19 |
# | e_{s,k}, e_{p,k}^{b_t} | the k-th shared and private experts (MLPs; not embeddings) | `BehaviorMoE.shared_w1` … `private_b2` | Eq. 19 |
# | W_g, w(x) | gate matrix and the softmax weights it gives; one gate per condition here | `gate_shared`, `gate_private`; `BehaviorMoE.gate_weights` | Eq. 18 |
# | MoE(x, b_t) | mixture of experts with the target behavior as a hard router (CGC [48]) | `BehaviorMoE` | Eqs. 19–20 |
#
# ### Stage 3, inference and evaluation (Sections 3.4, 4.1.2; notebook 04)
#
# | symbol | meaning | code | paper |
# |---|---|---|---|
# | prefix | a training sequence cut before one of its items, with [mask] appended. Stages 2–3 use each user's 20 most recent | `PrefixView`, `prefix_latents`, `prefixes_per_user` | Alg. 1, lines 18, 25 |
# | Algorithm 2 | z_∅ → sample z_0 for the target behavior → decode to scores of all N items | `FatsMB.score_all`, `FatsMB.generate` | Alg. 2 |
# | K | the cut-off of the top-K metrics (10, 20). Elsewhere K means attention keys, or the number of experts in `BehaviorMoE._mixture` | `recall_ndcg(ranks, ks)` | Sec. 4.1.2 |
# | Recall@K, NDCG@K | 1[rank < K] and 1[rank < K]/log₂(rank + 2), with rank 0 = top, averaged over users | `evaluate`, `recall_ndcg` | Sec. 4.1.2 |
# | mean ± std, ties | over seeds; a gap within one standard deviation is a tie | `verdicts.verdict`, `relation`, `format_mean_std` | — |
#
# ### Symbols that clash, and how we write them
#
# - **β and α**: the paper uses β_t and α_t for the noise schedule (Eqs. 1, 3) and also for
#   MCGLN's shift and gate (Eqs. 21–23). The schedule keeps β_t, α_t and ᾱ_t. MCGLN's
#   modulations become γ (scale), ξ (shift) and g (gate). The code still calls them
#   `gamma_*`, `beta_*` and `alpha_*`.
# - **The subscript t**: in Eqs. 22–23, α_t, β_t, γ_t and b_t do not mean timestep t. We write
#   the MoE branch's modulations γ_m, ξ_m, g_m, as the code does (`*_m`).
# - **σ**: the Cloze behavior mask probability (Sec. 3.1) and the per-step noise scale σ_t of a
#   reverse step (Eqs. 2–3).
# - **h**: the number of heads, the hidden states h_i, and BaRoPE's scaling h(·).
# - **e**: embeddings (e_v, e_b, e_p, e_t) and experts (e_s, e_p^{b_t}).
# - **K**: attention keys, and the K of Recall@K.
# - **z_φ, z_θ**: Sec. 3.1 and Sec. 3.4 print these for what is z_∅ everywhere else.
# - **ℰ, 𝒟 and φ, ψ**: the encoder and the decoder. Algorithms 1–2 use the letters, Eq. 14 the
#   parameters.

# %% [markdown]
# <a id="primer-cloze"></a>
# ## Primer: Cloze (BERT4Rec)
#
# **BERT4Rec** (Sun et al., CIKM 2019, [arXiv:1904.06690](https://arxiv.org/abs/1904.06690);
# the paper's [46]) trains a *bidirectional* Transformer on item sequences. It uses the Cloze
# task of BERT (Devlin et al., 2019; [6]): a share ρ of the items is replaced by [mask], and
# each masked item is predicted from the items on both sides of it. With ℳ the masked
# positions of the corrupted sequence S′_u:
#
# $$\mathcal{L}_{\text{Cloze}} = -\frac{1}{|\mathcal{M}|}\sum_{m \in \mathcal{M}} \log P\big(v_m \mid S'_u\big)$$
#
# At inference nothing is hidden. A [mask] is appended after the last item, and the output
# there scores every item as the next one. Random masks rarely look like that last position,
# so BERT4Rec also trains on rows that mask only their last item (`last_only_prob` here).
#
# The MBAE of FatsMB is this model with behaviors (Eq. 14). At a masked item the behavior is
# also masked with probability σ. The output with the behavior visible is z_b, and with it
# masked it is z_∅, so both latents live in one space. In code: `cloze_mask` and `MBAE.loss`
# (notebook 02), whose recipe study measures which windows and masks to train on.

# %% [markdown]
# <a id="primer-rope"></a>
# ## Primer: RoPE
#
# **Rotary position embedding** (Su et al., RoFormer, [arXiv:2104.09864](https://arxiv.org/abs/2104.09864),
# Neurocomputing 2024; [44]) adds nothing to the token embeddings. Instead, it rotates the
# query and the key inside attention. A query q ∈ ℝ^{d_k} is split into d_k/2 pairs, and pair
# i is read as a complex number q_i and turned by an angle proportional to the position m:
#
# $$f(q, m)_i = q_i\, e^{\mathrm{i}\, m\theta_i}, \qquad \theta_i = 10000^{-2i/d_k} \qquad (11)$$
#
# Rotations compose, so the score of a query at m and a key at n depends on the positions
# only through m − n:
# ⟨f(q, m), f(k, n)⟩ = Re Σ_i q_i k̄_i e^{i(m−n)θ_i} = g(q, k, m − n) (Eq. 10). If every
# position is shifted by the same amount, no score changes. Values are not rotated. Our
# code pairs coordinate i with i + d_k/2 (the GPT-NeoX and Llama layout).
#
# **BaRoPE** (Eq. 13) multiplies each rotated pair by a real number h(behavior). A real
# number commutes with a rotation, so the score becomes h(a)·h(b)·g(q, k, m − n) (Eq. 30),
# which is still relative. In code: `kernels.rope_tables`, `kernels.rotate_pairs` and `BaRoPE`;
# notebook 02 writes the textbook rotation out (`rope_cos_sin`, `apply_rope`).

# %% [markdown]
# <a id="primer-ddpm-ddim"></a>
# ## Primer: DDPM and DDIM
#
# **DDPM** (Ho, Jain and Abbeel, NeurIPS 2020, [arXiv:2006.11239](https://arxiv.org/abs/2006.11239); [14])
# destroys data with Gaussian noise in T small steps of variance β_t (Eq. 1) and trains a
# network to undo them. The noised sample at any step has a closed form, which is the
# paper's Eq. 15 with ᾱ_t:
#
# $$x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon, \qquad \epsilon \sim \mathcal{N}(0, \mathbf{I}), \qquad \bar\alpha_t = \prod_{s \le t} (1 - \beta_s) \qquad (15)$$
#
# The network ε_θ(x_t, t) is trained with ‖ε − ε_θ‖² (Eq. 4). For a given x_t, predicting ε
# and predicting x_0 carry the same information: x̂_0 = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t. Sampling
# starts from x_T ~ N(0, I) and runs the T reverse steps (Eq. 3).
#
# **DDIM** (Song, Meng and Ermon, ICLR 2021, [arXiv:2010.02502](https://arxiv.org/abs/2010.02502); [42])
# keeps DDPM's training and replaces the sampler. From step t it jumps straight to s = t − Δt:
#
# $$x_s = \sqrt{\bar\alpha_s}\,\hat x_0 + \sqrt{1-\bar\alpha_s-\sigma_t^2}\;\hat\epsilon + \sigma_t\,\epsilon, \qquad
#   \sigma_t = \eta\,\sqrt{\frac{1-\bar\alpha_s}{1-\bar\alpha_t}}\sqrt{1-\frac{\bar\alpha_t}{\bar\alpha_s}}$$
#
# With η = 0 the jump is deterministic (the paper's Eq. 5 and our profiles). With η = 1 it
# has DDPM's noise. A sample then costs T/Δt network calls (200/20 = 10) instead of T.
#
# **Latent diffusion** (Rombach et al., CVPR 2022, [arXiv:2112.10752](https://arxiv.org/abs/2112.10752); [40])
# runs all of this in the latent space of an autoencoder. Here that space is the MBAE's
# 64-dimensional latents. The β schedule is a choice: linear (DDPM), cosine (Nichol and
# Dhariwal, 2021; [35]), or the exponential one of the authors' code, which our profiles use.
# In code: `LatentDiffusion.q_sample`, `ddim_step` and `sample` (notebook 03).

# %% [markdown]
# <a id="primer-cfg"></a>
# ## Primer: classifier-free guidance
#
# **Classifier-free guidance** (Ho and Salimans, 2022, [arXiv:2207.12598](https://arxiv.org/abs/2207.12598); [15])
# trains one network to be both conditional and unconditional: during training, the condition
# c is replaced by ∅ with probability p_uncond (0.2). At sampling time the two predictions
# are extrapolated away from the unconditional one:
#
# $$\tilde\epsilon = (1+\omega)\,\epsilon_\theta(z_t, c) - \omega\,\epsilon_\theta(z_t, \varnothing)$$
#
# ω = 0 is the plain conditional model; a larger ω follows the condition more closely, at
# the cost of diversity. In FatsMB (Eq. 17) the guided condition is the target behavior b.
# z_∅ conditions both branches and is never dropped. (Sec. 4.5.5 says ω = 0 "degrades to
# classifier guided". It is the conditional model without guidance.)
#
# With x0-prediction, the two ẑ_0 are combined with the same weights. For a fixed z_t, ε is
# an affine function of ẑ_0, and the weights (1 + ω) and −ω sum to 1, so the result is
# exactly the ε̃ above. The two branches run as one batch of 2B rows. In code:
# `LatentDiffusion.guided_prediction` (notebook 03). How strongly to guide is measured in
# notebook 04.

# %% [markdown]
# <a id="primer-adaln-dit"></a>
# ## Primer: adaLN and DiT
#
# **FiLM** (Perez et al., AAAI 2018, [arXiv:1709.07871](https://arxiv.org/abs/1709.07871); [38])
# conditions a layer with a per-feature scale and shift computed from the condition. **DiT**
# (Peebles and Xie, ICCV 2023, [arXiv:2212.09748](https://arxiv.org/abs/2212.09748); [37])
# uses this in place of the learned affine of a Transformer's LayerNorm ("adaptive layer
# norm", adaLN). It also adds a gate to each residual branch. The gate starts at zero
# ("adaLN-Zero"), so a new block is exactly the identity and training starts from a stable
# point. For a branch F and a condition c:
#
# $$(\gamma, \delta, g) = \mathrm{MLP}(c), \qquad x \leftarrow x + g \odot F\big(\mathrm{LN}(x)\,(1+\gamma) + \delta\big)$$
#
# DiT writes β for the shift and α for the gate. We write ξ and g, because β and α already
# name the noise schedule ([Glossary](#glossary)).
#
# **MCGLN** (Eqs. 21–23) is two such branches per block, both conditioned on c = e_t + e_b:
# - F is an MLP over [modulated z_t ; z_∅] with (γ_s, ξ_s, g_s), so z_∅ enters every block
#   (Eq. 21);
# - F is a mixture of experts routed by the target behavior, Customized Gate Control from
#   PLE (Tang et al., RecSys 2020; [48]), with (γ_m, ξ_m, g_m) (Eq. 22).
#
# The "AdaLN" ablation of Table 4 replaces the mixture of experts with a plain MLP. In code:
# `MCGLNBlock` and `BehaviorMoE` (notebook 03).
