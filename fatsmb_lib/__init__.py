"""fatsmb_lib: the code the FatsMB notebooks share (KDD '26, latent preference diffusion for
multi-behavior sequential recommendation).

Six layers, one package each, in the order the data flow through them. A module imports only
from its own layer or the ones above it in this map, and within its layer only modules written
to its left (``tests/test_imports.py`` checks both against the real imports)::

    support   paths, runtime, checkpoints, precision, progress
    data      readers, synthetic, datasets, preprocess, batches, graph
    models    kernels, contract, encoder, diffusion, denoiser, fatsmb, baselines, gru4rec, mbstr,
              diffurec, mbgcn, mbgmn, pbat, missl, mgpt
    training  train, evaluate, context, epochs, registry, stages, peers, config, run
    studies   verdicts, entropy, plots, latent_space, compare, recipes, bench, sampling, ledger,
              diffusion_map, few_shot, diversity, sweeps, cost, claims, peer_search, __main__
    course    pipeline, student

- ``support``: the checkout's folders (``paths``), seeds and devices (``runtime``), atomic
  files and checkpoints (``checkpoints``; ``write_text`` writes every report), bf16 autocast
  (``precision``), one progress line per model (``progress``).
- ``data``: ``readers`` parse files, ``synthetic`` generates data, ``datasets`` maps a name to
  its source (built in, or registered by ``data/<name>.dataset.json``), ``preprocess`` makes
  dense time-ordered sequences and the leave-one-out split, ``batches`` serves them as Cloze /
  next-item / prefix / interaction batches, ``graph`` the training parts' user-item graph.
- ``models``: ``contract`` declares what every model is (``loss`` / ``score_all`` on one batch
  vocabulary); ``kernels`` holds the speed devices the equations are written with;
  ``encoder`` is the MBAE with BaRoPE (Section 3.1), ``diffusion`` + ``denoiser`` (MCGLN) the
  latent diffusion (Sections 3.2-3.3), ``fatsmb`` the model end to end; then the baselines.
- ``training``: ``train.fit`` is the loop, ``evaluate`` full-ranking metrics, ``context`` the
  run a model trains in, ``epochs`` what it sees each epoch, ``registry`` one registration per
  model, ``stages`` FatsMB's three stages (Algorithm 1), ``peers`` the baselines, ``config``
  every setting (``Profile``), ``run.open_run`` a notebook's parameters turned into a
  ``Context``.
- ``studies``: the tie rule every comparative word comes from (``verdicts``), notebook 01's
  entropies, figures, notebook 03's latent-space analysis, the ledger of the long studies, and
  the commands behind the reports: ``python -m fatsmb_lib.studies.<command>`` with compare,
  recipes, bench, sampling, diffusion_map, few_shot, diversity, sweeps (Fig. 8a-e), cost,
  claims or peer_search (the added baselines' validation search); ``python -m fatsmb_lib.studies`` (``__main__``)
  runs notebook 05's long studies one after the other.
- ``course``: ``python -m fatsmb_lib.course.pipeline`` executes the notebooks through
  papermill; ``student`` writes the students' copy without solutions.

Adding a model: one module in ``models`` and one registration in ``training/peers.py``; the
recipe is in ``training/registry.py``'s docstring.
"""

__version__ = "0.1.0"
