"""The benchmark command runs end to end and reports positive throughputs."""
import json

from fatsmb_lib.bench import run_bench


def test_bench_on_tiny_data(tmp_path):
    result = run_bench("synthetic-tiny", "cpu", n_batches=2, data_dir=str(tmp_path),
                       out_dir=tmp_path, log=lambda line: None)
    saved = json.loads((tmp_path / "synthetic-tiny-cpu.json").read_text())
    assert saved["dataset"] == "synthetic-tiny"
    for stage in ("stage1", "stage2", "stage3"):
        assert result[stage]["sequences_per_s"] > 0 and result[stage]["epoch_s"] > 0
    assert result["inference"]["users_per_s"] > 0 and result["peak_memory_mib"] > 0
