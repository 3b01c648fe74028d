"""The cost study: one epoch per model in a process of its own, with its rows, its training
seconds (validation excluded) and its peak memory."""
import json

from fatsmb_lib.data.datasets import synthetic_config
from fatsmb_lib.studies import cost
from fatsmb_lib.studies.cost import (
    LENGTHS,
    SCALING_USERS,
    measure_model,
    run_cost,
    run_scaling,
    scaling_dataset,
)

SMALL = dict(max_users=100)


def test_each_model_reports_its_epoch_rows_and_memory(tmp_path):
    fatsmb = measure_model("FatsMB", "synthetic-tiny", "smoke", "cpu", str(tmp_path / "a"), **SMALL)
    assert list(fatsmb["stages"]) == ["stage 1", "stage 2", "stage 3"]
    assert all(s["rows"] > 0 and s["seconds"] >= 0 for s in fatsmb["stages"].values())
    assert fatsmb["peak_mib"] > 0
    sasrec = measure_model("SASRec", "synthetic-tiny", "smoke", "cpu", str(tmp_path / "b"), **SMALL)
    assert sasrec["stages"]["epoch"]["rows"] >= 100     # next-item windows: at least one per user


def test_the_report_comes_from_a_process_per_model(tmp_path):
    report = run_cost("synthetic-tiny", "smoke", "cpu", models=("SASRec",),
                      out_dir=tmp_path, log=lambda line: None, **SMALL)
    assert set(report["models"]) == {"SASRec"} and report["models"]["SASRec"]["peak_mib"] > 0
    saved = json.loads((tmp_path / "cost.json").read_text())
    assert saved["models"] == report["models"] and "s per 1,000 rows" in (
        tmp_path / "cost.md").read_text()


def test_the_scaling_is_added_to_the_report_and_keeps_the_models_rows(tmp_path, monkeypatch):
    asked = []

    def fake(name, dataset, profile, device, **overrides):
        asked.append((name, synthetic_config(dataset).n_items, overrides.get("max_len")))
        return {"stages": {"stage 1": {"seconds": 1.0, "rows": 100},
                           "epoch": {"seconds": 1.0, "rows": 100}}, "peak_mib": 1.0}

    monkeypatch.setattr(cost, "measure_in_subprocess", fake)
    quiet = {"out_dir": tmp_path, "log": lambda line: None}
    run_cost("synthetic-tiny", "smoke", "cpu", models=("SASRec",), **quiet)
    run_scaling("synthetic-tiny", "smoke", "cpu", lengths=(10, 20), item_counts=(300,), **quiet)
    assert asked[1:] == [("MBAE", 1000, 10), ("MBAE", 1000, 20), ("MBAE", 300, None)]
    saved = json.loads((tmp_path / "cost.json").read_text())
    assert set(saved["models"]) == {"SASRec"}                       # kept
    scaling = saved["scaling"]
    assert set(scaling["against_length"]) == {"10", "20"}
    assert set(scaling["against_items"]) == {"300"}
    assert "ms per row" in (tmp_path / "cost.md").read_text()
    run_cost("synthetic-tiny", "smoke", "cpu", models=("GRU4Rec",), **quiet)
    assert json.loads((tmp_path / "cost.json").read_text())["scaling"] == scaling   # kept too


def test_the_scaling_data_fill_the_longest_window(tmp_path):
    measured = measure_model("MBAE", scaling_dataset(300), "smoke", "cpu", str(tmp_path),
                             max_len=20)
    assert measured["stages"]["stage 1"]["rows"] >= 10 * SCALING_USERS   # 20-item windows
    data = synthetic_config(scaling_dataset())
    assert data.min_len >= max(LENGTHS)                 # every user's history fills L = 200
