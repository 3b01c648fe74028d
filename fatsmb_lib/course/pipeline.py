"""Run the notebook sequence through papermill: ``python -m fatsmb_lib.course.pipeline``.

Each notebook ``notebooks/NN_topic.ipynb`` that runs code (all but the markdown-only glossary
``00_notation``) is executed (never in place) into
``reports/<dataset>/<run>/NN_topic.ipynb`` with the papermill parameters ``dataset``,
``profile``, ``device``, ``run_dir`` and ``seed``, exported to HTML beside it, and timed. The
notebooks write their figures (PNG), JSON and Markdown results into the same folder; the
headline files (``stats.json``, ``entropy.json``, ``metrics.json``, ``results.md``) are also
copied to ``reports/<dataset>/``.

Everything that can fail cheaply fails first, before any training: an unknown dataset (a
registered one, ``data/<name>.dataset.json``, is known), a missing data file, a device that
is misspelled or absent, an unknown parameter name (papermill itself only warns about
those), ``--only`` matching no notebook, and another run already writing the same folder
(``<run folder>/.lock``), and a ``--run`` that is not a single folder name. A notebook that
fails stops the sequence: ``run_summary.json`` then says which one, its error and where its
partial output is, and the command exits non-zero; re-running it reloads every finished
checkpoint and resumes an interrupted one. ``run_summary.json`` is written for every outcome:
``running`` from the start, then ``finished``, ``failed`` or ``interrupted`` (Ctrl-C or
SIGTERM, which also stop the notebook's kernel; exit status 128 + the signal's number).

While a notebook runs, the console shows one line per trained model (rewritten after each
epoch) and every warning the notebook raises, read from the event file the notebooks append to
(:mod:`fatsmb_lib.support.progress`); the summary lists the warnings again. Kernels talk to the runner
over IPC sockets where the platform has them, so ipykernel's warning about unencrypted TCP
does not fill the console.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from ..data.datasets import NAME_PATTERN, raw_file
from ..support.checkpoints import CorruptCheckpointError, read_checkpoint, write_text
from ..support.paths import data_folder, project_root
from ..support.progress import Console, EventTail
from ..support.runtime import peak_rss_mib, resolve_device
from ..training.config import PROFILES, get_profile
from ..training.run import lock_run_dir

PUBLISHED = ("stats.json", "entropy.json", "metrics.json", "results.md")
COMMON_PARAMETERS = ("dataset", "profile", "device", "run_dir", "data_dir", "seed")
EVENTS_NAME = ".events.jsonl"   # what the notebooks report while they run (progress.EventTail)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
KERNEL_GRACE_S = 5.0            # a signalled kernel gets this long to exit before SIGKILL


class NotebookFailedError(RuntimeError):
    """A notebook of the sequence raised; ``summary`` is what run_summary.json holds."""

    def __init__(self, message: str, summary: dict):
        super().__init__(message)
        self.summary = summary


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived (a BaseException, like KeyboardInterrupt: nothing catches it
    by accident)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class RunInterruptedError(RuntimeError):
    """The run was stopped by a signal; ``summary`` is what run_summary.json holds."""

    def __init__(self, message: str, summary: dict, signum: int):
        super().__init__(message)
        self.summary, self.signum = summary, signum


def check_run_name(run: str) -> str:
    """``--run`` names one folder under ``reports/<dataset>/``: letters, digits, '_', '-', '.'
    (starting with a letter or digit), so no run writes outside the reports folder."""
    if not NAME_PATTERN.fullmatch(run):
        raise ValueError(f"--run {run!r}: a run name must be a single folder name (letters, "
                         f"digits, '_', '-' and '.', starting with a letter or digit), e.g. "
                         f"--run trial2; the run is written to reports/<dataset>/<name>/. To "
                         f"write elsewhere, pass --reports-dir")
    return run


def course_notebooks(root: Path | None = None, notebooks_dir: Path | None = None) -> list[Path]:
    """Every notebook of the course in reading order: notebooks/NN_*.ipynb (or those in
    ``notebooks_dir``), ``00_notation`` (read, never executed) included."""
    folder = notebooks_dir or (root or project_root()) / "notebooks"
    return sorted(Path(folder).glob("[0-9][0-9]_*.ipynb"))


def runs_code(notebook: Path) -> bool:
    """Whether ``notebook`` has a code cell; a markdown-only one (the glossary and primer,
    ``00_notation``) is read, not executed, and takes no parameters."""
    cells = json.loads(Path(notebook).read_text(encoding="utf-8"))["cells"]
    return any(cell["cell_type"] == "code" for cell in cells)


def notebook_sequence(root: Path | None = None, notebooks_dir: Path | None = None) -> list[Path]:
    """The notebooks the pipeline executes, in order: the course notebooks that run code
    (``01_*`` onwards; the markdown-only ``00_notation`` is skipped)."""
    return [nb for nb in course_notebooks(root, notebooks_dir) if runs_code(nb)]


def executed_cells(notebook) -> list:
    """The cells of an (executed) notebook node without papermill's injected-parameters cell:
    those that must match the source notebook's cells one for one."""
    return [c for c in notebook.cells if "injected-parameters" not in c.metadata.get("tags", [])]


def select_notebooks(notebooks: list[Path], only: list[str] | None) -> list[Path]:
    """The notebooks whose names start with one of ``only`` (all when empty); a prefix that
    matches none is an error listing the notebooks."""
    if not only:
        return notebooks
    unmatched = [prefix for prefix in only if not any(nb.name.startswith(prefix) for nb in notebooks)]
    if unmatched:
        raise ValueError(f"--only {' '.join(unmatched)}: no notebook name starts with "
                         f"{', '.join(map(repr, unmatched))}; the notebooks are "
                         f"{', '.join(nb.stem for nb in notebooks)}")
    return [nb for nb in notebooks if any(nb.name.startswith(prefix) for prefix in only)]


def check_parameters(notebook: Path, parameters: dict) -> None:
    """Reject names the notebook's ``parameters`` cell does not define (papermill only warns)."""
    import papermill

    known = set(papermill.inspect_notebook(str(notebook)))
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise ValueError(
            f"{notebook.name} has no parameter(s) {unknown}; its parameters are {sorted(known)}"
        )


def export_html(executed: Path) -> None:
    """``executed``'s HTML copy beside it."""
    import nbformat
    from nbconvert import HTMLExporter

    html, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    write_text(executed.with_suffix(".html"), html)


def run_notebook(notebook: Path, out_dir: Path, parameters: dict) -> float:
    """Execute one notebook into ``out_dir`` (plus an HTML export); returns its wall time.

    Raises papermill's ``PapermillExecutionError`` when a cell fails; the partially executed
    notebook (with the error) is then in ``out_dir`` all the same.
    """
    import papermill

    check_parameters(notebook, parameters)
    executed = out_dir / notebook.name
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fatsmb-kernel-") as sockets:
        papermill.execute_notebook(
            str(notebook), str(executed), parameters=parameters, kernel_name="python3",
            cwd=str(notebook.parent), progress_bar=False, log_output=False,
            coalesce_streams=True,              # a model line's rewrites saved as its last state
            kernel_manager_class=_kernel_manager_class(), **_kernel_transport(Path(sockets)),
        )
    seconds = time.perf_counter() - start
    export_html(executed)
    return seconds


def _kernel_transport(socket_dir: Path) -> dict:
    """IPC sockets between runner and kernel where the platform has them: nothing to encrypt
    on the network, and no "running over TCP without encryption" warning on the console.

    The sockets live in ``socket_dir``, a folder of this kernel's own: jupyter_client's default
    (``kernel-ipc-N`` in the working directory, ``notebooks/``) is shared by every run, so two
    pipelines at once (two datasets, two profiles) would connect to each other's kernels.
    """
    if os.name != "posix":
        return {}
    from traitlets.config import Config

    return {"config": Config({"KernelManager": {"transport": "ipc",
                                                "ip": str(socket_dir / "kernel")}})}


@functools.cache
def _kernel_manager_class() -> type:
    """nbclient's kernel manager, remembering the kernels it runs so that an interrupted run
    can stop them (:func:`_stop_kernels`)."""
    from jupyter_client.manager import AsyncKernelManager

    class TrackedKernelManager(AsyncKernelManager):
        running: set = set()

        async def _async_launch_kernel(self, kernel_cmd, **kw):
            await super()._async_launch_kernel(kernel_cmd, **kw)
            TrackedKernelManager.running.add(self)

        async def shutdown_kernel(self, now: bool = False, restart: bool = False):
            try:
                await super().shutdown_kernel(now=now, restart=restart)
            finally:
                TrackedKernelManager.running.discard(self)

    return TrackedKernelManager


def _stop_kernels() -> None:
    """SIGTERM every kernel this process started and still runs (each leads its own process
    group), SIGKILL after :data:`KERNEL_GRACE_S`."""
    if not hasattr(os, "killpg"):
        return
    pids = [km.provisioner.pid for km in list(_kernel_manager_class().running)
            if getattr(km, "provisioner", None) is not None and km.provisioner.pid]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + KERNEL_GRACE_S
        while sig == signal.SIGTERM and time.monotonic() < deadline and any(
                _alive(pid) for pid in pids):
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


@contextmanager
def _signals_raise():
    """In the main thread: SIGINT and SIGTERM raise :class:`Interrupted` (restored after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _interruptible(call):
    """``call()`` in a worker thread while the main thread waits, so that a signal reaches our
    handler (nbclient, in the main thread, would take SIGINT and SIGTERM for itself) and the
    notebook's kernel is stopped. Off the main thread, just ``call()``."""
    if threading.current_thread() is not threading.main_thread():
        return call()
    outcome = {}

    def work():
        try:
            outcome["value"] = call()
        except BaseException as exc:   # handed to the main thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.2)
    except BaseException:
        _stop_kernels()
        worker.join(30)
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def sync_outputs(executed: Path, source: Path) -> None:
    """Copy the outputs of an executed notebook into its source ``.ipynb`` (cells matched by
    source text; papermill's injected-parameters cell is skipped), so the committed notebook
    shows the results of a real run without being executed in place."""
    import nbformat

    ran = nbformat.read(executed, as_version=4)
    src = nbformat.read(source, as_version=4)
    ran_cells = executed_cells(ran)
    if [c.source for c in ran_cells] != [c.source for c in src.cells]:
        raise ValueError(f"{executed} was not executed from the current {source}: re-run it")
    for cell, done in zip(src.cells, ran_cells):
        if cell.cell_type == "code":
            cell.outputs = done.outputs
            cell.execution_count = done.execution_count
    nbformat.write(src, source)


def run_pipeline(dataset: str, profile: str = "default", device: str = "auto", run: str | None = None,
                 data_dir: str | Path | None = None, seed: int = 0, only: list[str] | None = None,
                 update_sources: bool = False, reports_dir: Path | None = None, log=print,
                 notebooks_dir: Path | None = None) -> dict:
    """Run every notebook (or those whose names start with ``only``) for one dataset/profile
    into ``<reports_dir>/<dataset>/<run>`` (default reports_dir: ``<repo>/reports``).

    Holds ``<run folder>/.lock`` while it runs (a second run on the same folder gets
    ``RunLockedError``) and keeps ``run_summary.json`` there for every outcome: when a notebook
    fails, ``status: "failed"`` and :class:`NotebookFailedError`; on SIGINT/SIGTERM,
    ``status: "interrupted"`` and :class:`RunInterruptedError`. ``log`` prints the console's
    lines: the notebooks, one line per trained model and every warning (``summary["warnings"]``).
    """
    root = project_root()
    data_path = data_folder(data_dir)
    run = check_run_name(profile if run is None else run)  # before any folder is made
    resolve_device(device)                              # misspelled, or cuda without a GPU
    get_profile(profile, dataset, data_path)            # unknown profile or dataset
    raw_file(dataset, data_path)                        # missing file
    notebooks = select_notebooks(notebook_sequence(root, notebooks_dir), only)
    run_dir = Path(reports_dir or root / "reports") / dataset / run
    parameters = dict(dataset=dataset, profile=profile, device=device, run_dir=str(run_dir),
                      data_dir=str(data_path), seed=seed)
    for notebook in notebooks:                           # fail on a bad name before any run
        check_parameters(notebook, parameters)
    shown_dir = run_dir.relative_to(root) if run_dir.is_relative_to(root) else run_dir
    summary = {"dataset": dataset, "profile": profile, "device": device, "run_dir": str(shown_dir),
               "status": "running", **_earlier(run_dir, dataset, profile, only), "warnings": []}
    console = Console(log)

    with lock_run_dir(run_dir, hint=f"wait for it to finish, or pass --run NAME to write "
                                    f"reports/{dataset}/NAME instead"):
        _write_summary(run_dir, summary)   # a summary of an earlier run never outlives this start
        events = EventTail(run_dir / EVENTS_NAME, console)
        current = None
        try:
            with _signals_raise(), events:
                for notebook in notebooks:
                    current, events.notebook = notebook, notebook.stem
                    console.line(f"[pipeline] {notebook.name} ...")
                    try:
                        seconds = _interruptible(lambda: run_notebook(notebook, run_dir, parameters))
                    except Exception as exc:
                        events.poll()
                        summary["warnings"] = events.warnings
                        raise _failed(notebook, exc, run_dir, shown_dir, summary) from None
                    events.poll()
                    summary["warnings"] = events.warnings
                    summary["seconds"][notebook.stem] = round(seconds, 1)
                    summary["peak_rss_mib"] = max(round(peak_rss_mib(children=True)),  # largest kernel
                                                  summary.get("peak_rss_mib", 0))
                    console.line(f"[pipeline] {notebook.name} done in {seconds:.0f} s")
                    if update_sources:
                        sync_outputs(run_dir / notebook.name, notebook)
                current, events.notebook = None, ""
                for name in PUBLISHED:
                    if (run_dir / name).exists():
                        shutil.copy2(run_dir / name, run_dir.parent / name)
                training, unreadable = training_times(run_dir)
                summary["warnings"] = events.warnings + unreadable
                summary.update(status="finished",
                               total_seconds=round(sum(summary["seconds"].values()), 1),
                               training=training)
                _write_summary(run_dir, summary)
        except NotebookFailedError:
            raise
        except (Interrupted, KeyboardInterrupt) as exc:
            raise _interrupted(exc, current, events, run_dir, shown_dir, summary) from None
        except Exception as exc:                          # after the notebooks: record it too
            summary.update(status="failed", warnings=events.warnings,
                           total_seconds=round(sum(summary["seconds"].values()), 1),
                           failed={"notebook": None, "error": f"{type(exc).__name__}: {exc}",
                                   "where": "after the notebooks (publishing, summary)"})
            _write_summary(run_dir, summary)
            raise
    log(_summary_text(summary, run_dir))
    return summary


def training_times(run_dir: Path) -> tuple[dict[str, dict], list[str]]:
    """({checkpoint name: {"epochs", "seconds"}}, warnings) of every model trained into
    ``run_dir``: the epochs run and the wall time of its training epochs (validation
    included), read from the history each checkpoint keeps; a stage's share of a notebook's
    time. Checkpoints are read as everywhere else (``checkpoints.read_checkpoint``); one that
    cannot be read (a stray or damaged file that no notebook loaded) is left out with a
    warning instead of failing a finished run."""
    times, unreadable = {}, []
    for path in sorted(run_dir.glob("*.pt")):
        try:
            history = read_checkpoint(path, required=("history",)).get("history")
        except (CorruptCheckpointError, OSError) as exc:
            unreadable.append(f"{exc}: left out of the training times (no notebook of this run "
                              f"loaded it; delete or move it)")
            continue
        if history:
            times[path.stem] = {"epochs": len(history["epochs"]),
                                "seconds": round(sum(history["seconds"]), 1)}
    return times, unreadable


def _earlier(run_dir: Path, dataset: str, profile: str, only) -> dict:
    """With ``--only``, what the folder's last summary of the same dataset and profile says of
    the notebooks not re-run: their ``seconds``, and the ``peak_rss_mib`` it measured (so the
    summary still covers the whole sequence)."""
    path = run_dir / "run_summary.json"
    if not only or not path.exists():
        return {"seconds": {}}
    try:
        earlier = json.loads(path.read_text())
    except ValueError:
        return {"seconds": {}}
    if (earlier.get("dataset"), earlier.get("profile")) != (dataset, profile):
        return {"seconds": {}}
    kept = {"seconds": dict(earlier.get("seconds", {}))}
    if "peak_rss_mib" in earlier:
        kept["peak_rss_mib"] = earlier["peak_rss_mib"]
    return kept


def _write_summary(run_dir: Path, summary: dict) -> None:
    write_text(run_dir / "run_summary.json", json.dumps(summary, indent=2) + "\n")


def _interrupted(exc: BaseException, notebook: Path | None, events: EventTail, run_dir: Path,
                 shown_dir: Path, summary: dict) -> RunInterruptedError:
    """Record an interrupted run in run_summary.json; the error to raise."""
    signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
    name = signal.Signals(signum).name
    events.poll()
    partial = notebook is not None and (run_dir / notebook.name).exists()
    summary.update(status="interrupted", signal=name, warnings=events.warnings,
                   total_seconds=round(sum(summary["seconds"].values()), 1),
                   interrupted={"notebook": notebook.stem if notebook else None,
                                "partial_output": str(shown_dir / notebook.name) if partial
                                else None},
                   resume="re-run the same command: finished checkpoints in the run folder are "
                          "reloaded, an interrupted one resumes from its last epoch")
    _write_summary(run_dir, summary)
    where = f" during {notebook.name}" if notebook else ""
    return RunInterruptedError(
        f"interrupted by {name}{where}; the notebook's kernel was stopped. Summary: "
        f"{shown_dir / 'run_summary.json'}. Re-run the same command to resume: finished "
        f"checkpoints are reloaded, an interrupted one resumes from its last epoch.",
        summary, signum)


def _failed(notebook: Path, exc: Exception, run_dir: Path, shown_dir: Path,
            summary: dict) -> NotebookFailedError:
    """Record a failed notebook in run_summary.json; the error to raise."""
    partial = run_dir / notebook.name
    if getattr(exc, "ename", None):          # papermill: the error raised inside a cell
        error = f"{exc.ename}: {exc.evalue}"
        where = f"cell [{exc.exec_count}]"
    else:                                     # the kernel died, a timeout, ...
        error, where = f"{type(exc).__name__}: {exc}".strip(), "before or between cells"
    if partial.exists():
        try:
            export_html(partial)
        except Exception:  # the partial notebook is what matters; its HTML copy is a bonus
            pass
    summary.update(status="failed", total_seconds=round(sum(summary["seconds"].values()), 1),
                   failed={"notebook": notebook.stem, "error": error, "where": where,
                           "partial_output": str(shown_dir / notebook.name) if partial.exists()
                           else None},
                   resume="fix the cause and re-run the same command: finished checkpoints "
                          "in the run folder are reloaded, an interrupted one resumes")
    _write_summary(run_dir, summary)
    message = (f"{notebook.name} failed in {where}: {error}\n"
               f"Partial outputs: {shown_dir / notebook.name} (and the rest of {shown_dir}); "
               f"summary: {shown_dir / 'run_summary.json'}.\n"
               f"Fix the cause and re-run the same command: finished checkpoints are reloaded, "
               f"not retrained.")
    return NotebookFailedError(message, summary)


def _summary_text(summary: dict, run_dir: Path) -> str:
    lines = [f"Outputs in {run_dir}", "Wall time per notebook:"]
    lines += [f"  {name:<28} {secs:>7.0f} s" for name, secs in summary["seconds"].items()]
    lines.append(f"  {'total':<28} {summary['total_seconds']:>7.0f} s")
    if summary.get("training"):
        lines.append("Training time per model (epochs run):")
        lines += [f"  {name:<40} {t['seconds']:>7.0f} s ({t['epochs']} epoch"
                  f"{'s' if t['epochs'] != 1 else ''})"
                  for name, t in summary["training"].items()]
    if "peak_rss_mib" in summary:
        lines.append(f"Peak memory of the largest kernel: {summary['peak_rss_mib']} MiB (RSS)")
    if summary.get("warnings"):
        lines.append(f"Warnings ({len(summary['warnings'])}, also in run_summary.json):")
        lines += [f"  {warning}" for warning in summary["warnings"]]
    metrics_file = run_dir / "metrics.json"
    if metrics_file.exists():
        models = json.loads(metrics_file.read_text())["models"]
        lines.append("Test metrics (full ranking): model  Recall@10  NDCG@10  Recall@20  NDCG@20")
        for name, m in models.items():
            lines.append(f"  {name:<10} {m['Recall@10']:.4f} {m['NDCG@10']:.4f} "
                         f"{m['Recall@20']:.4f} {m['NDCG@20']:.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fatsmb_lib.course.pipeline",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml100k",
                        help="a built-in name, or one registered as data/<name>.dataset.json")
    parser.add_argument("--profile", default="default", choices=sorted(PROFILES))
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--run", default=None,
                        help="run folder name, one folder under reports/<dataset>/ "
                             "(default: the profile)")
    parser.add_argument("--data-dir", default=None, help="default: the checkout's data/")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 01 02")
    parser.add_argument("--reports-dir", default=None,
                        help="where <dataset>/<run>/ goes (default: <repo>/reports)")
    parser.add_argument("--update-sources", action="store_true",
                        help="copy the outputs back into notebooks/*.ipynb (maintainers)")
    args = parser.parse_args(argv)
    try:
        run_pipeline(args.dataset, args.profile, args.device, args.run, args.data_dir, args.seed,
                     args.only, args.update_sources,
                     Path(args.reports_dir) if args.reports_dir else None)
    except NotebookFailedError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        sys.exit(1)
    except RunInterruptedError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        sys.exit(128 + exc.signum)
    except (ValueError, RuntimeError) as exc:   # bad input, found before any notebook ran
        parser.exit(2, f"{parser.prog}: error: {exc}\n")


if __name__ == "__main__":
    main()
