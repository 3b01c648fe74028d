"""``python -m fatsmb_lib.studies``: notebook 05's long studies, one after the other.

Each study resumes from its ledger and its checkpoints, so the command can be stopped and run
again at any point; ``--only`` picks some. The results go where notebook 05 reads them:

- ``map``: where the diffusion pays (``diffusion_map``), ``reports/synthetic-map/``;
- ``few-shot``: Figure 7 on ``--dataset`` (``few_shot``), ``reports/<dataset>/few_shot.*``;
- ``diversity``: the lists' diversity (``diversity``), ``reports/<dataset>/diversity.*``;
- ``sweeps``: Figure 8a-e over seeds (``sweeps``), ``reports/<dataset>/sweeps.*``;
- ``claims``: the claims ledger from whatever has finished, ``reports/claims.md``.
"""
from __future__ import annotations

import argparse

from . import claims, diffusion_map, diversity, few_shot, sweeps

STUDIES = ("map", "few-shot", "diversity", "sweeps", "claims")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fatsmb_lib.studies",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml100k")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", choices=STUDIES, default=list(STUDIES))
    args = parser.parse_args(argv)
    if "map" in args.only:
        diffusion_map.run_map(args.seeds, args.profile, device=args.device)
    if "few-shot" in args.only:
        few_shot.run_few_shot(args.dataset, args.seeds, args.profile, device=args.device)
    if "diversity" in args.only:
        diversity.run_diversity(args.dataset, args.profile, args.device, seed=args.seeds[0])
    if "sweeps" in args.only:
        sweeps.run_sweeps(args.dataset, args.seeds, args.profile, device=args.device)
    if "claims" in args.only:
        claims.main(["--dataset", args.dataset])


if __name__ == "__main__":
    main()
