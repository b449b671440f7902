"""Reading a tt-metal ops report: columns as tt-metal names them (tools/tracy/process_ops_logs.py)."""

import pandas as pd
import pytest

from bertl11.errors import UserError
from bertl11.tt_profile import device_throughput, read_ops_report, summarize_ops


@pytest.fixture
def report_file(tmp_path):
    rows = [
        # a host-side op has no device kernel duration and must not count
        {"OP CODE": "Tensor.to", "CORE COUNT": "", "MATH FIDELITY": "", "DEVICE KERNEL DURATION [ns]": ""},
        {"OP CODE": "Matmul", "CORE COUNT": 96, "MATH FIDELITY": "LoFi", "DEVICE KERNEL DURATION [ns]": 300_000},
        {"OP CODE": "Softmax", "CORE COUNT": 96, "MATH FIDELITY": "HiFi4", "DEVICE KERNEL DURATION [ns]": 100_000},
        {"OP CODE": "Matmul", "CORE COUNT": 64, "MATH FIDELITY": "LoFi", "DEVICE KERNEL DURATION [ns]": 100_000},
    ]
    path = tmp_path / "ops_perf_results.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_summary_groups_by_op_code(report_file):
    summary = summarize_ops(read_ops_report(report_file))
    assert list(summary.index) == ["Matmul", "Softmax"]
    assert summary.loc["Matmul", "calls"] == 2 and summary.loc["Matmul", "total_us"] == 400.0
    assert summary.loc["Matmul", "share_%"] == 80.0 and summary.loc["Matmul", "core count"] == "64, 96"


def test_device_throughput_is_batch_over_kernel_time(report_file):
    # 500 us of kernels per run of batch 12 -> 24,000 samples/s; two runs in the file halve the time per run
    assert device_throughput(read_ops_report(report_file), batch=12) == pytest.approx(12 / 500e-6)
    assert device_throughput(read_ops_report(report_file), batch=12, runs=2) == pytest.approx(12 / 250e-6)


def test_not_a_report(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="not a tt-metal ops report"):
        read_ops_report(path)
    with pytest.raises(UserError, match="cannot read"):
        read_ops_report(tmp_path / "missing.csv")


def test_a_measured_report_lines_up_with_a_prediction_op_by_op():
    """Newer tt-metal names ("...DeviceOperation"), an extra op only the card ran, an op only the prediction has."""
    from bertl11.tt_profile import compare_reports, error_by_op, op_kind

    measured = pd.DataFrame({
        "OP CODE": ["MatmulDeviceOperation", "ReshapeViewDeviceOperation", "Softmax", "NLPConcatHeadsDeviceOperation", "Matmul"],
        "DEVICE KERNEL DURATION [ns]": [300_000.0, 2_000.0, 100_000.0, 10_000.0, 200_000.0],
    })
    predicted = pd.DataFrame({
        "OP CODE": ["Matmul", "Softmax", "NlpConcatHeads", "LayerNorm", "Matmul"],
        "DEVICE KERNEL DURATION [ns]": [240_000, 125_000, 10_000, 40_000, 250_000],
        "BERTL11 OP": ["(1) QKV", "(4) softmax", "(6) concat heads", "(8) add+layernorm", "(7) self-output"],
    })
    assert op_kind("NLPConcatHeadsDeviceOperation") == op_kind("NlpConcatHeads") == "nlpconcatheads"
    pairs, unpaired = compare_reports(measured, predicted)
    assert list(pairs["op"]) == ["(1) QKV", "(4) softmax", "(6) concat heads", "(7) self-output"]
    assert list(pairs["error_%"]) == [-20.0, 25.0, 0.0, 25.0]
    assert unpaired == {"measured": 1, "predicted": 1}
    by_op = error_by_op(pairs)
    assert by_op.loc["(4) softmax", "measured_us"] == 100.0 and by_op.loc["(4) softmax", "predicted_us"] == 125.0
