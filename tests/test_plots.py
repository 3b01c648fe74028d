"""The notebooks' figure helpers: one colour scale, labelled axes, mean ± std from the seeds,
and code listings read from the library itself."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fatsmb_lib import plots  # noqa: E402
from fatsmb_lib.entropy import entropy_table  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_attention_maps_share_one_colour_scale_and_label_both_axes():
    weak, strong = np.full((3, 3), 1 / 3), np.eye(3)
    fig = plots.attention_maps({"a": weak, "b": strong}, ["1_x", "2_y", "3_x"], "t")
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert [image.get_clim() for image in images] == [(0.0, 1.0)] * 2
    assert len(fig.axes) == 3                                   # two maps and one colour bar
    for ax in fig.axes[:2]:
        assert ax.get_xlabel().startswith("key") and ax.get_ylabel().startswith("query")


def test_mean_std_bars_draw_the_spread_from_zero():
    table = {"APE": {"m": (0.05, 0.01)}, "BaRoPE": {"m": (0.06, 0.002)}}
    fig = plots.mean_std_bars(table, ("m",), "t")
    ax = fig.axes[0]
    assert ax.get_ylim()[0] == 0 and ax.get_ylabel()
    heights = [patch.get_height() for patch in ax.patches]
    assert heights == pytest.approx([0.05, 0.06])
    (segments,) = ax.collections                                # the vertical error bars
    spans = [seg[1, 1] - seg[0, 1] for seg in segments.get_segments()]
    assert spans == pytest.approx([0.02, 0.004])


def test_entropy_bars_show_marginals_beside_conditionals():
    ours = entropy_table(np.array([1, 1, 2, 3]), np.array([1, 2, 1, 1]))
    fig = plots.entropy_bars(ours, {"P": ours}, "ours")
    behavior, item = fig.axes
    assert behavior.get_ylabel() == item.get_ylabel() == "entropy (nats)"
    heights = [patch.get_height() for patch in behavior.patches]
    assert heights == pytest.approx([ours["H(B)"], ours["H(B)"], ours["H(B|I)"], ours["H(B|I)"]])


def test_code_listing_folds_the_library_source():
    folded = plots.code_listing(plots.save, summary="how figures are saved").data
    assert folded.startswith("<details><summary>how figures are saved</summary>")
    assert "def save(fig" in folded and folded.rstrip().endswith("</details>")
    assert "<details>" not in plots.code_listing(plots.save, collapsed=False).data
