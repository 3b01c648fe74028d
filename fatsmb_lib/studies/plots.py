"""Figures of the notebooks: explicit sizes, one function per figure, each saved as PNG.

Every function returns the matplotlib ``Figure``; :func:`save` writes it into the run folder,
so the same picture is in the notebook and in ``reports/<dataset>/<run>/``. Also here,
:func:`code_listing`: a library function's source, collapsed, beside the equation it implements.
"""
from __future__ import annotations

import inspect
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np


def save(fig: plt.Figure, run_dir: Path, name: str) -> None:
    """Write ``fig`` as ``<run_dir>/<name>.png`` (150 dpi); the notebook still shows it."""
    path = Path(run_dir) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")


def code_listing(*objects, summary: str = "", collapsed: bool = True):
    """The source of library functions or classes as one Markdown block, folded into a
    ``<details>`` element (JupyterLab and the HTML export show a clickable summary line) unless
    ``collapsed=False``. Notebooks put it beside the equation the code implements; the source
    is read from the installed library, so the listing cannot go stale.
    """
    from IPython.display import Markdown  # imported here: the library loads without IPython

    names = ", ".join(f"`{getattr(o, '__qualname__', o)}`" for o in objects)
    code = "\n\n".join(textwrap.dedent(inspect.getsource(o)).rstrip() for o in objects)
    block = f"```python\n{code}\n```"
    if not collapsed:
        return Markdown(block)
    return Markdown(f"<details><summary>{summary or 'source of ' + names}</summary>\n\n"
                    f"{block}\n\n</details>")


def behavior_shares(counts: dict[str, int], title: str) -> plt.Figure:
    """Bar chart of the share of interactions per behavior (notebook 01)."""
    fig, ax = plt.subplots(figsize=(5, 3))
    total = sum(counts.values())
    names = list(counts)
    shares = [counts[name] / total for name in names]
    bars = ax.bar(names, shares, color="tab:blue")
    ax.bar_label(bars, labels=[f"{s:.1%}" for s in shares])
    ax.set_ylabel("share of interactions")
    ax.set_ylim(0, max(shares) * 1.2)
    ax.set_title(title)
    return fig


def popularity_long_tail(item_counts: np.ndarray, title: str) -> plt.Figure:
    """Item interaction counts by popularity rank (log-log) and the cumulative share of
    interactions held by the top items (notebook 01)."""
    counts = np.sort(np.asarray(item_counts))[::-1]
    rank = np.arange(1, len(counts) + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    left.loglog(rank, np.maximum(counts, 1), color="tab:blue")
    left.set_xlabel("item popularity rank")
    left.set_ylabel("interactions")
    left.set_title("long tail")
    right.plot(rank / len(rank), np.cumsum(counts) / counts.sum(), color="tab:orange")
    right.set_xlabel("share of items (most popular first)")
    right.set_ylabel("share of interactions")
    right.set_title("cumulative share")
    right.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def entropy_bars(ours: dict[str, float], paper: dict[str, dict[str, float]], ours_name: str) -> plt.Figure:
    """Table 1 at a glance (notebook 01): per dataset, H(B) beside H(B|I) (left) and H(I) beside
    H(I|B) (right). Each pair differs by the same I(I;B) (mutual information is symmetric),
    printed above it as the share of the marginal entropy that conditioning removes, so
    the gap between the panels' scales -- H(I) − H(B) -- is the whole asymmetry."""
    names = [ours_name, *paper]
    rows = [ours, *paper.values()]
    x = np.arange(len(names))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for ax, (var, given, what) in zip(axes, (("B", "I", "behavior"), ("I", "B", "item"))):
        marginal = [r[f"H({var})"] for r in rows]
        conditional = [r[f"H({var}|{given})"] for r in rows]
        ax.bar(x - 0.2, marginal, width=0.4, color="tab:grey", label=f"H({var}): {what}")
        bars = ax.bar(x + 0.2, conditional, width=0.4, color="tab:blue",
                      label=f"H({var}|{given}): {what} given {'item' if given == 'I' else 'behavior'}")
        ax.bar_label(bars, labels=[f"−{1 - c / m:.1%}" for m, c in zip(marginal, conditional)],
                     fontsize=7)
        ax.set_xticks(x, names, rotation=15, ha="right")
        ax.set_ylabel("entropy (nats)")
        ax.set_ylim(0, max(marginal) * 1.45)  # room for the legend above the bars
        ax.legend(fontsize=7, loc="upper left")
        ax.set_title(f"uncertainty of the {what}")
    fig.suptitle("Table 1: both conditionals remove the same I(I;B) nats; "
                 "labels: the share of the marginal removed")
    fig.tight_layout()
    return fig


def training_curves(histories: dict, metric: str = "NDCG@10") -> plt.Figure:
    """Training loss and validation ``metric`` per epoch for several ``History`` objects."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    for name, history in histories.items():
        left.plot(history.epochs, history.train_loss, label=name)
        epochs, values = history.metric(metric)
        right.plot(epochs, values, label=name)
    left.set_xlabel("epoch")
    left.set_ylabel("training loss")
    right.set_xlabel("epoch")
    right.set_ylabel(f"validation {metric}")
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig


def attention_maps(maps: dict[str, np.ndarray], labels: list[str], title: str) -> plt.Figure:
    """Averaged attention matrices side by side with item_behavior tick labels (Figure 5), on
    ONE colour scale (0 to the largest weight of any map, one colour bar), so that equal
    colours mean equal weights across the maps. Row = query (the position attending), column =
    key (the position attended to); each row sums to 1."""
    vmax = max(float(np.max(matrix)) for matrix in maps.values())
    fig, axes = plt.subplots(1, len(maps), figsize=(5.2 * len(maps) + 1, 5.4), squeeze=False,
                             layout="constrained")
    for ax, (name, matrix) in zip(axes[0], maps.items()):
        image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=vmax)
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
        ax.set_yticks(range(len(labels)), labels, fontsize=6)
        ax.set_xlabel("key (attended to), oldest → newest")
        ax.set_ylabel("query (attending)")
        ax.set_title(name)
    fig.colorbar(image, ax=list(axes[0]), fraction=0.03, label="attention weight")
    fig.suptitle(title)
    return fig


def _mean_and_error(value) -> tuple[float, float]:
    """A plotted value: a float (one run, no error bar) or a ``(mean, std)`` pair over seeds."""
    if isinstance(value, (tuple, list)):
        return float(value[0]), float(value[1])
    return float(value), 0.0


def metric_bars(table: dict[str, dict], metrics: tuple[str, ...], title: str,
                ylabel: str = "metric (full ranking)") -> plt.Figure:
    """Grouped bars of ``metrics`` for each model of ``table`` (name -> metrics dict).

    A value is a float (one run) or a ``(mean, std)`` pair over seeds, drawn as the mean with a
    ±1 std error bar (the tie rule's spread, :mod:`fatsmb_lib.studies.verdicts`). Bars start at zero;
    model names are slanted so that long names do not run together, and the legend sits
    outside the axes so that it covers no bar.
    """
    names = list(table)
    x = np.arange(len(names))
    width = 0.8 / len(metrics)
    fig, ax = plt.subplots(figsize=(0.9 * len(names) + 3.5, 3.6))
    for i, metric in enumerate(metrics):
        means, errors = zip(*(_mean_and_error(table[n][metric]) for n in names))
        ax.bar(x + (i - (len(metrics) - 1) / 2) * width, means, width=width, label=metric,
               yerr=errors if any(errors) else None, capsize=2, error_kw={"elinewidth": 0.8})
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title)
    fig.tight_layout()
    return fig


def denoising_trajectory(distances: np.ndarray, steps: list[int], title: str,
                         reference: float | None = None) -> plt.Figure:
    """Distance of the sampled latent to z_b (and to z_∅) along the DDIM steps (notebook 03).

    ``distances``: (2, n_steps + 1) rows "to z_b", "to z_∅". ``reference``: the mean
    ‖z_∅ − z_b‖, drawn as a dashed line: a sample below it is nearer z_b than z_∅ already is.
    """
    fig, ax = plt.subplots(figsize=(6, 3.2))
    x = np.arange(distances.shape[1])
    ax.plot(x, distances[0], marker="o", label="‖z_t − z_b‖")
    ax.plot(x, distances[1], marker="s", label="‖z_t − z_∅‖")
    if reference is not None:
        ax.axhline(reference, color="grey", linestyle="--", label=f"‖z_∅ − z_b‖ = {reference:.2f}")
    ax.set_xticks(x, ["z_T", *[f"t={t}" for t in steps[1:]], "z_0"], rotation=45, fontsize=7)
    ax.set_xlabel("DDIM step")
    ax.set_ylabel("mean Euclidean distance")
    ax.legend(fontsize=8)
    ax.set_title(title)
    return fig


def latent_scatter(points: np.ndarray, behaviors: np.ndarray, names: tuple[str, ...],
                   title: str) -> plt.Figure:
    """2-D embedding of behavior-specific preferences coloured by behavior (Figure 6a)."""
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for b, name in enumerate(names, start=1):
        chosen = behaviors == b
        ax.scatter(points[chosen, 0], points[chosen, 1], s=6, alpha=0.6, label=name)
    ax.legend(markerscale=3, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    return fig


def similarity_boxes(similarity: dict[str, np.ndarray], title: str,
                     ylabel: str = "cos(z_∅, z_b)", baseline: float | None = None,
                     baseline_label: str = "random pair of users") -> plt.Figure:
    """Distribution of cos(z_∅, z_b) per behavior (Figure 6b); ``baseline`` (e.g. the mean
    cosine between unrelated users' latents) is drawn as a dashed line."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.boxplot(list(similarity.values()), showfliers=False)
    ax.set_xticks(range(1, len(similarity) + 1), list(similarity))
    if baseline is not None:
        ax.axhline(baseline, color="grey", linestyle="--", label=f"{baseline_label}: {baseline:.3f}")
        ax.legend(fontsize=8)
    ax.set_xlabel("target behavior b")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return fig


def noise_schedules(alpha_bars: dict[str, np.ndarray], title: str) -> plt.Figure:
    """ᾱ_t of several β schedules against t (notebook 03, Eq. 15)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for name, alpha_bar in alpha_bars.items():
        ax.plot(np.arange(len(alpha_bar)), alpha_bar, label=name)
    ax.set_xlabel("t")
    ax.set_ylabel("ᾱ_t (signal kept)")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title(title)
    return fig


def sweep(values: list[float], metrics: dict[str, list], xlabel: str, title: str,
          ylabel: str = "validation NDCG@10", band: tuple[float, float] | None = None,
          band_label: str = "") -> plt.Figure:
    """A metric (or several) against one numeric hyperparameter (Figure 8 style).

    ``values`` go on a value axis (their spacing is shown as it is). A metric's entries are
    floats (one run) or ``(mean, std)`` pairs over seeds, drawn with ±1 std error bars. The y
    axis starts at zero, so that a gap inside the seeds' spread does not look like a trend;
    ``band = (low, high)`` shades a reference range (e.g. ±1 seed std), labelled ``band_label``.
    """
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    if band is not None:
        ax.axhspan(*band, color="grey", alpha=0.2, label=band_label)
    for name, ys in metrics.items():
        means, errors = zip(*(_mean_and_error(y) for y in ys))
        ax.errorbar(values, means, yerr=errors if any(errors) else None, marker="o", capsize=3,
                    label=name)
    ax.set_xticks(values, [f"{v:g}" for v in values])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0, top=1.25 * max(ax.get_ylim()[1], band[1] if band else 0))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def recipe_curves(curves: dict[str, dict[str, tuple[list[float], list[float]]]],
                  title: str) -> plt.Figure:
    """Validation NDCG@10 against rows seen (millions), one panel per model and one line per
    recipe (notebook 02, "what makes a Cloze model train").

    ``curves[model][recipe] = (rows seen, validation values)``.
    """
    fig, axes = plt.subplots(1, len(curves), figsize=(4.6 * len(curves), 3.4), squeeze=False,
                             sharey=True)
    recipes = list(dict.fromkeys(recipe for lines in curves.values() for recipe in lines))
    colour = {recipe: f"C{i}" for i, recipe in enumerate(recipes)}  # one colour per recipe
    for ax, (model, lines) in zip(axes[0], curves.items()):
        for recipe, (rows, values) in lines.items():
            ax.plot(np.asarray(rows) / 1e6, values, label=recipe, color=colour[recipe])
        ax.set_xlabel("training rows seen (millions)")
        ax.set_title(model)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("validation NDCG@10")
    axes[0, 0].legend(fontsize=7)     # the first panel draws every recipe
    fig.suptitle(title)
    fig.tight_layout()
    return fig
