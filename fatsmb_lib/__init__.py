"""fatsmb_lib: the code the FatsMB notebooks share (KDD '26, latent preference diffusion for
multi-behavior sequential recommendation).

The path of the data through the library. Arrows are imports; a module imports only modules
on lines above it or to its left (``tests/test_imports.py`` checks there is no cycle)::

    data       readers → synthetic → datasets → preprocess → batches
    models     encoder → baselines        diffusion, denoiser → model (FatsMB) → latents
    training   runtime, checkpoints → train (fit)            runtime → evaluate (+ recommend)
    settings   config (Profile: every hyperparameter; builds the component configs)
    a run      run (open_run → Context) → stages → pipeline, compare, bench → notebooks
               pipeline → student (the notebooks without their solutions)
    figures    entropy, plots, verdicts (the tie rule every comparative word comes from)

- ``readers`` parse files, ``synthetic`` generates data, ``datasets`` maps a name to its
  source (built in, or registered by ``data/<name>.dataset.json``), ``preprocess`` makes
  dense time-ordered sequences and the leave-one-out split,
  ``batches`` serves them as Cloze / next-item / prefix batches.
- ``encoder`` is the MBAE with BaRoPE, ``diffusion`` + ``denoiser`` (MCGLN) the latent
  diffusion, ``model`` FatsMB end to end.
- ``runtime`` owns seeds and devices, ``checkpoints`` atomic files, ``train`` the loop,
  ``evaluate`` full-ranking metrics.
- ``run.open_run`` turns a notebook's parameters into a ``Context``; ``stages`` trains the
  three stages and the baselines from it. ``run.expect`` checks trained results (strict on
  ml100k), ``run.lock_run_dir`` keeps one writer per run folder. ``pipeline`` executes the
  notebooks through papermill; ``student`` writes the students' copy without solutions.
"""

__version__ = "0.1.0"
