"""The figure helpers draw what the notebooks' rules ask: error bars from seeds, values on
value axes, y-labels, axes from zero, legends off the bars."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fatsmb_lib import plots  # noqa: E402


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
