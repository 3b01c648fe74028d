"""The notebooks' figure helpers: one colour scale, labelled axes, error bars from seeds,
values on value axes, axes from zero, legends off the bars, code listings from the library."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fatsmb_lib.studies import plots  # noqa: E402
from fatsmb_lib.studies.entropy import entropy_table  # noqa: E402


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


def test_metric_bars_draw_the_spread_from_zero():
    table = {"APE": {"m": (0.05, 0.01)}, "BaRoPE": {"m": (0.06, 0.002)}}
    fig = plots.metric_bars(table, ("m",), "t")
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


def test_metric_bars_draw_one_seed_values_and_seed_error_bars():
    one_run = {"A": {"NDCG@10": 0.06}, "B": {"NDCG@10": 0.07}}
    fig = plots.metric_bars(one_run, ("NDCG@10",), "one run")
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == pytest.approx([0.06, 0.07])
    assert not ax.lines and not ax.collections          # no error bars for a single run
    over_seeds = {"A": {"NDCG@10": (0.06, 0.004)}, "B": {"NDCG@10": [0.07, 0.002]}}
    ax = plots.metric_bars(over_seeds, ("NDCG@10",), "seeds", ylabel="NDCG@10").axes[0]
    assert [p.get_height() for p in ax.patches] == pytest.approx([0.06, 0.07])
    segments = ax.collections[0].get_segments()          # one vertical bar per model: mean ± std
    assert [s[:, 1].tolist() for s in segments] == [pytest.approx([0.056, 0.064]),
                                                     pytest.approx([0.068, 0.072])]
    assert ax.get_ylabel() == "NDCG@10" and ax.get_ylim()[0] == 0


def test_metric_bars_keep_the_legend_outside_the_axes():
    fig = plots.metric_bars({"a long model name": {"x": 1.0}, "another long name": {"x": 2.0}},
                            ("x",), "t")
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1          # right of the axes: covers no bar
    assert all(label.get_rotation() > 0 for label in ax.get_xticklabels())


def test_sweep_puts_values_on_a_value_axis_from_zero():
    fig = plots.sweep([0.0, 1.0, 2.0, 5.0], {"one run": [0.07, 0.074, 0.073, 0.071]}, "ω", "t",
                      band=(0.072, 0.076), band_label="±1 seed std")
    ax = fig.axes[0]
    x, y = ax.lines[0].get_data()
    assert np.asarray(x).tolist() == [0.0, 1.0, 2.0, 5.0]   # spacing kept: 5 is not the 4th category
    assert ax.get_ylim()[0] == 0 and ax.get_ylabel() == "validation NDCG@10"
    assert "±1 seed std" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_sweep_draws_seed_error_bars():
    ax = plots.sweep([0, 1], {"3 seeds": [(0.076, 0.005), (0.078, 0.003)]}, "ω", "t").axes[0]
    segments = ax.collections[0].get_segments()
    assert [s[:, 1].tolist() for s in segments] == [pytest.approx([0.071, 0.081]),
                                                     pytest.approx([0.075, 0.081])]
