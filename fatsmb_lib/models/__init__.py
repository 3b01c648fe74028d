"""Models: the contract every model keeps, the MBAE, latent diffusion, FatsMB and the baselines."""
