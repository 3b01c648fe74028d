"""The benchmark command runs end to end and writes the keys runs are compared by."""
import json

import torch

from fatsmb_lib.studies.bench import matmul_gflops, run_bench


def test_bench_on_tiny_data(tmp_path):
    result = run_bench("synthetic-tiny", "cpu", n_batches=2, data_dir=str(tmp_path),
                       out_dir=tmp_path, log=lambda line: None, stage2_batch_size=64)
    saved = json.loads((tmp_path / "synthetic-tiny-cpu.json").read_text())
    assert saved["dataset"] == "synthetic-tiny"
    assert saved["stage2_batch_size"] == 64 and saved["batch_size"] != 64
    assert set(saved["matmul_gflops"]) == {"fp32", "bf16"}
    for stage in ("stage1", "stage2", "stage3"):
        s = saved["stages"][stage]
        assert s["rows_per_s"] > 0 and s["gflops"] > 0 and 0 < s["fraction_of_matmul"]
    assert saved["inference"]["users_per_s"] > 0
    assert saved["peak_rss_mib"] > 0
    assert "| stage1 | fp32 |" in (tmp_path / "synthetic-tiny-cpu.md").read_text()
    assert result["stages"]["stage1"]["rows_per_s"] == saved["stages"]["stage1"]["rows_per_s"]


def test_matmul_rate_is_a_rate():
    torch.manual_seed(0)
    assert matmul_gflops(torch.device("cpu"), "fp32", 64, 64, 64, repeats=3) > 0
