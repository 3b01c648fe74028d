"""Run the notebook sequence through papermill: ``python -m fatsmb_lib.pipeline``.

Each notebook ``notebooks/NN_topic.ipynb`` is executed (never in place) into
``reports/<dataset>/<run>/NN_topic.ipynb`` with the papermill parameters ``dataset``,
``profile``, ``device``, ``run_dir`` and ``seed``, exported to HTML beside it, and timed. The
notebooks write their figures (PNG), JSON and Markdown results into the same folder; the
headline files (``stats.json``, ``entropy.json``, ``metrics.json``, ``results.md``) are also
copied to ``reports/<dataset>/``.

Everything that can fail cheaply fails first, before any training: an unknown dataset (a
registered one, ``data/<name>.dataset.json``, is known), a missing data file, ``device=cuda`` without a GPU, an unknown parameter name (papermill itself
only warns about those).
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from .config import PROFILES, get_profile, project_root
from .datasets import raw_file
from .runtime import resolve_device

PUBLISHED = ("stats.json", "entropy.json", "metrics.json", "results.md")
COMMON_PARAMETERS = ("dataset", "profile", "device", "run_dir", "data_dir", "seed")


def notebook_sequence(root: Path | None = None) -> list[Path]:
    """The course notebooks in order: notebooks/NN_*.ipynb."""
    return sorted((root or project_root()).joinpath("notebooks").glob("[0-9][0-9]_*.ipynb"))


def check_parameters(notebook: Path, parameters: dict) -> None:
    """Reject names the notebook's ``parameters`` cell does not define (papermill only warns)."""
    import papermill

    known = set(papermill.inspect_notebook(str(notebook)))
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise ValueError(
            f"{notebook.name} has no parameter(s) {unknown}; its parameters are {sorted(known)}"
        )


def run_notebook(notebook: Path, out_dir: Path, parameters: dict) -> float:
    """Execute one notebook into ``out_dir`` (plus an HTML export); returns its wall time."""
    import nbformat
    import papermill
    from nbconvert import HTMLExporter

    check_parameters(notebook, parameters)
    executed = out_dir / notebook.name
    start = time.perf_counter()
    papermill.execute_notebook(
        str(notebook), str(executed), parameters=parameters, kernel_name="python3",
        cwd=str(notebook.parent), progress_bar=False, log_output=False,
    )
    seconds = time.perf_counter() - start
    html, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    executed.with_suffix(".html").write_text(html, encoding="utf-8")
    return seconds


def sync_outputs(executed: Path, source: Path) -> None:
    """Copy the outputs of an executed notebook into its source ``.ipynb`` (cells matched by
    source text; papermill's injected-parameters cell is skipped), so the committed notebook
    shows the results of a real run without being executed in place."""
    import nbformat

    ran = nbformat.read(executed, as_version=4)
    src = nbformat.read(source, as_version=4)
    ran_cells = [c for c in ran.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    if [c.source for c in ran_cells] != [c.source for c in src.cells]:
        raise ValueError(f"{executed} was not executed from the current {source}: re-run it")
    for cell, done in zip(src.cells, ran_cells):
        if cell.cell_type == "code":
            cell.outputs = done.outputs
            cell.execution_count = done.execution_count
    nbformat.write(src, source)


def run_pipeline(dataset: str, profile: str = "default", device: str = "auto", run: str | None = None,
                 data_dir: str = "data", seed: int = 0, only: list[str] | None = None,
                 update_sources: bool = False, reports_dir: Path | None = None, log=print) -> dict:
    """Run every notebook (or those whose names start with ``only``) for one dataset/profile
    into ``<reports_dir>/<dataset>/<run>`` (default reports_dir: ``<repo>/reports``)."""
    root = project_root()
    data_path = root / data_dir
    get_profile(profile, dataset, data_path)            # unknown profile or dataset
    raw_file(dataset, data_path)                        # missing file
    resolve_device(device)                              # cuda without a GPU
    notebooks = [nb for nb in notebook_sequence(root)
                 if not only or any(nb.name.startswith(prefix) for prefix in only)]
    run_dir = Path(reports_dir or root / "reports") / dataset / (run or profile)
    run_dir.mkdir(parents=True, exist_ok=True)
    parameters = dict(dataset=dataset, profile=profile, device=device, run_dir=str(run_dir),
                      data_dir=str(data_path), seed=seed)
    for notebook in notebooks:                           # fail on a bad name before any run
        check_parameters(notebook, parameters)

    timings = {}
    for notebook in notebooks:
        log(f"[pipeline] {notebook.name} ...")
        timings[notebook.stem] = round(run_notebook(notebook, run_dir, parameters), 1)
        log(f"[pipeline] {notebook.name} done in {timings[notebook.stem]:.0f} s")
        if update_sources:
            sync_outputs(run_dir / notebook.name, notebook)
    for name in PUBLISHED:
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, run_dir.parent / name)

    shown_dir = run_dir.relative_to(root) if run_dir.is_relative_to(root) else run_dir
    summary = {"dataset": dataset, "profile": profile, "device": device, "run_dir": str(shown_dir),
               "seconds": timings, "total_seconds": round(sum(timings.values()), 1)}
    (run_dir / "run_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(_summary_text(summary, run_dir))
    return summary


def _summary_text(summary: dict, run_dir: Path) -> str:
    lines = [f"Outputs in {run_dir}", "Wall time per notebook:"]
    lines += [f"  {name:<28} {secs:>7.0f} s" for name, secs in summary["seconds"].items()]
    lines.append(f"  {'total':<28} {summary['total_seconds']:>7.0f} s")
    metrics_file = run_dir / "metrics.json"
    if metrics_file.exists():
        models = json.loads(metrics_file.read_text())["models"]
        lines.append("Test metrics (full ranking): model  Recall@10  NDCG@10  Recall@20  NDCG@20")
        for name, m in models.items():
            lines.append(f"  {name:<10} {m['Recall@10']:.4f} {m['NDCG@10']:.4f} "
                         f"{m['Recall@20']:.4f} {m['NDCG@20']:.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fatsmb_lib.pipeline",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml100k",
                        help="a built-in name, or one registered as data/<name>.dataset.json")
    parser.add_argument("--profile", default="default", choices=sorted(PROFILES))
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--run", default=None, help="run folder name (default: the profile)")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 01 02")
    parser.add_argument("--reports-dir", default=None,
                        help="where <dataset>/<run>/ goes (default: <repo>/reports)")
    parser.add_argument("--update-sources", action="store_true",
                        help="copy the outputs back into notebooks/*.ipynb (maintainers)")
    args = parser.parse_args(argv)
    run_pipeline(args.dataset, args.profile, args.device, args.run, args.data_dir, args.seed,
                 args.only, args.update_sources, Path(args.reports_dir) if args.reports_dir else None)


if __name__ == "__main__":
    main()
