"""The cost study: one epoch per model in a process of its own, with its rows, its training
seconds (validation excluded) and its peak memory."""
import json

from fatsmb_lib.studies.cost import measure_model, run_cost

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
