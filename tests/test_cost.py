"""The cost study: one epoch per model in a process of its own, with its rows, its training
seconds (validation excluded) and its peak memory."""
import json

from fatsmb_lib.studies.cost import measure_model, run_cost, run_scaling

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


def test_the_scaling_is_added_to_the_report_and_keeps_the_models_rows(tmp_path):
    run_cost("synthetic-tiny", "smoke", "cpu", models=("SASRec",), out_dir=tmp_path,
             log=lambda line: None, **SMALL)
    report = run_scaling("synthetic-tiny", "smoke", "cpu", out_dir=tmp_path, log=lambda line: None,
                         lengths=(10, 20), item_counts=(300,))
    saved = json.loads((tmp_path / "cost.json").read_text())
    assert set(saved["models"]) == {"SASRec"}                       # kept
    scaling = saved["scaling"]
    assert scaling == json.loads(json.dumps(report["scaling"]))
    assert set(scaling["against_length"]) == {"10", "20"}
    assert set(scaling["against_items"]) == {"300"}
    assert all(s["rows"] > 0 for s in scaling["against_length"].values())
    assert "ms per row" in (tmp_path / "cost.md").read_text()
    run_cost("synthetic-tiny", "smoke", "cpu", models=("GRU4Rec",), out_dir=tmp_path,
             log=lambda line: None, **SMALL)
    assert json.loads((tmp_path / "cost.json").read_text())["scaling"] == scaling   # kept too
