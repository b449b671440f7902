"""`bertl11 perf` and the fast torch path it times.

The fast path is checked against HF transformers on identical weights, with padding; speed itself is shown
by benchmarks/perf_benchmark.py, never asserted here.
"""

import csv

import pytest
import torch

from bertl11 import QAModel, machine, resolve_model
from bertl11.cli import main
from bertl11.compare import pcc
from bertl11.perf import Timing, paired_speedup
from bertl11.profile import model_flops
from conftest import encode

PERF_COLUMNS = (
    "First Run (s)", "Compile Time (s)", "Inference Time (s)", "Throughput (inf/s)", "HF First Run (s)",
    "HF Inference Time (s)", "HF Throughput (inf/s)", "Speedup vs HF", "Device", "HF Dtype", "Batch", "Seq",
    "Config", "Versions", "PCC vs HF float32 (start)", "PCC vs HF float32 (end)",
)


def test_perf_cli_writes_the_report(tmp_path, capsys):
    report = tmp_path / "perf.csv"
    code = main(["perf", "--model", "tiny", "--config", "BFLOAT8_B-DRAM", "--batch", "2", "--seq", "64",
                 "--iterations", "2", "--compare", "hf", "--csv", str(report)])
    assert code == 0
    (row,) = list(csv.DictReader(report.open()))
    assert set(PERF_COLUMNS) <= set(row)
    assert (row["Batch"], row["Seq"], row["Device"]) == ("2", "64", "cpu")
    # HF is timed in float32 and, where this CPU's bfloat16 GEMMs are native, bfloat16: the faster is the yardstick
    timed = {dtype: float(row[f"HF {dtype} Throughput (inf/s)"]) for dtype in ("float32", "bfloat16")
             if not row[f"HF {dtype} Throughput (inf/s)"].startswith("not timed")}
    assert ("bfloat16" in timed) == machine.probe().native("bfloat16")
    assert row["HF Dtype"] == max(timed, key=timed.get)
    assert float(row["HF Throughput (inf/s)"]) == timed[row["HF Dtype"]]
    assert row["Speedup vs HF"] == row[f"Speedup vs HF {row['HF Dtype']}"]
    assert row["Kernel"] == QAModel.load(resolve_model("tiny"), "BFLOAT8_B-DRAM", fast=True).ops.kernel()
    assert float(row["PCC vs HF float32 (start)"]) >= 0.999 and float(row["PCC vs HF float32 (end)"]) >= 0.999
    assert float(row["Throughput (inf/s)"]) > 0 and float(row["HF Throughput (inf/s)"]) > 0
    assert "Speedup vs HF" in capsys.readouterr().out
    # utilisation: the forward's operations per second against the probed peak of the kernel its GEMMs run
    # The row's time is rounded to 0.1 ms and its rate to 0.1 GOP/s: the rate must lie within both roundings.
    operations = model_flops(resolve_model("tiny").shape, 2, 64) / 1e9
    seconds = float(row["Inference Time (s)"])
    slowest, fastest = operations / (seconds + 0.00005), operations / (seconds - 0.00005)
    assert slowest - 0.05 <= float(row["Achieved (GOP/s)"]) <= fastest + 0.05
    assert row["Peak Kernel"] == QAModel.load(resolve_model("tiny"), "BFLOAT8_B-DRAM", fast=True).ops.peak_kernel()
    peak = machine.probe().rates[row["Peak Kernel"]] * int(row["Threads"])  # the threads the run used
    assert float(row["Peak (GOP/s)"]) == pytest.approx(peak, abs=0.1)
    assert float(row["Utilisation (%)"]) == pytest.approx(100 * float(row["Achieved (GOP/s)"]) / peak, abs=0.2)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--batch", "0"], "--batch must be at least 1"),
        (["--iterations", "0"], "--iterations must be at least 1"),
        (["--seq", "1000"], "exceeds the model's 512 positions"),
        (["--csv", "/nonexistent-dir/perf.csv"], "does not exist"),
    ],
)
def test_perf_bad_input_is_one_line(arguments, message, capsys):
    code = main(["perf", "--model", "tiny", "--iterations", "1", *arguments])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1


def test_paired_speedup_is_the_median_pair_ratio():
    ours = Timing(cached=[1.0, 2.0, 1.0])
    reference = Timing(cached=[3.0, 2.0, 2.5])  # ratios 3, 1, 2.5
    assert paired_speedup(ours, reference) == 2.5


FAST_CASES = [
    # (model, config, minimum PCC vs float32 HF)
    ("tiny", "FLOAT32", 0.9999),
    ("minilm", "FLOAT32", 0.9999),
    ("minilm", "BFLOAT16-DRAM", 0.99),
    # int8 linears on real pretrained weights, whose outlier channels the float slice must absorb
    ("minilm", "BFLOAT8_B-SHARDED", 0.99),
    pytest.param("large-random-2", "BFLOAT8_B-SHARDED", 0.99, marks=pytest.mark.slow),
]


@pytest.fixture(scope="module")
def references(squad_pairs):
    cases = {}

    def reference(name):
        if name not in cases:
            source = resolve_model(name)
            batch = encode(source.tokenizer, squad_pairs[:6])
            with torch.no_grad():
                cases[name] = source, batch, source.hf_model()(**batch)
        return cases[name]

    return reference


@pytest.mark.parametrize("model_name, config, minimum", FAST_CASES)
def test_fast_path_matches_hf(model_name, config, minimum, references):
    source, batch, reference = references(model_name)
    assert batch["attention_mask"].sum(1).unique().numel() > 1, "the batch must mix lengths so padding is exercised"
    model = QAModel.load(source, config, fast=True)
    start, end = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    assert pcc(start, reference.start_logits) >= minimum
    assert pcc(end, reference.end_logits) >= minimum
    if config == "FLOAT32":
        assert torch.equal(start.argmax(-1), reference.start_logits.argmax(-1))
        assert torch.equal(end.argmax(-1), reference.end_logits.argmax(-1))


@pytest.mark.parametrize("kernel", [*machine.INT8_KERNELS_OF[machine.EAGER], "none"])
def test_each_int8_kernel_matches_hf(kernel, references, monkeypatch):
    """Every kernel the eager fast path can pick for 8-bit configs, forced, on real pretrained weights (short
    windows: on AVX2 `_int_mm` runs a reference kernel). The compiled forward's qlinear: tests/test_compiled.py."""
    monkeypatch.setenv(machine.INT8_KERNEL_VARIABLE, kernel)
    source, batch, reference = references("minilm")
    model = QAModel.load(source, "BFLOAT8_B-SHARDED", fast=True)
    assert model.ops.int8.kernel == kernel and (kernel in model.ops.kernel()) == (kernel != "none")
    short = {k: v[:2, :128] for k, v in batch.items()}
    with torch.no_grad():
        expected = source.hf_model()(**short)
    start, end = model(short["input_ids"], short["token_type_ids"], short["attention_mask"])
    assert pcc(start, expected.start_logits) >= 0.99
    assert pcc(end, expected.end_logits) >= 0.99
