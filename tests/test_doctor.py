"""`bertl11 doctor`: what it reports is checked against torch, the environment and the kernels the backends use."""

import os

import pytest
import torch

from bertl11 import RUN_CONFIGS, QAModel, machine, resolve_model
from bertl11.cli import main


def doctor(capsys, *arguments):
    code = main(["doctor", *arguments])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def line(lines, prefix):
    (found,) = [text for text in lines if text.startswith(prefix)]
    return found


def test_doctor_reports_versions_cpu_cuda_kernels_and_cache(capsys):
    code, lines, _ = doctor(capsys)
    assert code == 0
    assert line(lines, "torch:") == f"torch: {torch.__version__}"
    assert line(lines, "transformers:").split()[1] == __import__("transformers").__version__
    assert line(lines, "ttnn:")
    assert f"torch capability {torch.backends.cpu.get_cpu_capability()}" in line(lines, "CPU:")
    assert line(lines, "threads:").split()[1] == str(torch.get_num_threads())
    assert ("no CUDA device visible" in line(lines, "CUDA:")) == (not torch.cuda.is_available())
    assert line(lines, "weight cache:").startswith(f"weight cache: {os.environ['BERTL11_CACHE']} ($BERTL11_CACHE")
    for name in RUN_CONFIGS:
        assert line(lines, f"GEMM {name} on cpu:")
    # What the seed never ran on Wormhole or Blackhole is marked (the interleaved configs, other batches, Blackhole).
    assert "untested on a card: BFLOAT8_B-DRAM" in line(lines, "Tenstorrent Wormhole n150:")
    assert "untested on a card: BFLOAT8_B-DRAM" in line(lines, "Tenstorrent Wormhole n300")
    assert line(lines, "Tenstorrent Blackhole p150:").endswith("untested on a card (the seed never ran on a Blackhole)")


@pytest.mark.parametrize("gemm, int8", [("float32", "none"), ("bfloat16", "fbgemm"), ("float32", "int_mm")])
def test_doctor_shows_the_kernels_a_loaded_model_uses(gemm, int8, monkeypatch, capsys):
    """The doctor's lines are the backends' own: a model loaded under the same forcing reports the same."""
    monkeypatch.setenv(machine.GEMM_DTYPE_VARIABLE, gemm)
    monkeypatch.setenv(machine.INT8_KERNEL_VARIABLE, int8)
    _, lines, _ = doctor(capsys, "--cache-dir", "/nonexistent/cache")
    simulated = QAModel.load(resolve_model("tiny"), "BFLOAT8_B-SHARDED").ops
    fast = QAModel.load(resolve_model("tiny"), "BFLOAT8_B-SHARDED", fast=True).ops
    assert simulated.gemm_dtype == getattr(torch, gemm)
    assert line(lines, "GEMM BFLOAT8_B-SHARDED on cpu:") == (
        f"GEMM BFLOAT8_B-SHARDED on cpu: simulation {simulated.kernel()}; --fast {fast.kernel()}")
    assert f"simulation {gemm} GEMMs (forced by {machine.GEMM_DTYPE_VARIABLE})" in line(lines, "GEMM BFLOAT16-DRAM on cpu:")
    assert ("int8" in fast.kernel().split(";")[0]) == (int8 != "none")
    assert line(lines, "weight cache:") == "weight cache: /nonexistent/cache (--cache-dir; not created yet)"


@pytest.mark.parametrize("forced", [None, machine.EAGER, machine.COMPILED])
def test_doctor_says_how_the_fast_path_runs_its_forward(forced, monkeypatch, capsys):
    if forced:
        monkeypatch.setenv(machine.FAST_PATH_VARIABLE, forced)
    else:
        monkeypatch.delenv(machine.FAST_PATH_VARIABLE, raising=False)
    _, lines, _ = doctor(capsys)
    way = forced or (machine.COMPILED if machine.probe().compiler else machine.EAGER)
    assert line(lines, "fast path on cpu:") == f"fast path on cpu: {way} forward ({machine.probe().forward().reason})"
    assert line(lines, "GEMM FLOAT32 on cpu:").endswith(f"; {way} forward ({machine.probe().forward().reason})")
    assert "qlinear" in line(lines, "GEMM rates") or not torch.backends.mkldnn.is_available()


@pytest.mark.parametrize("variable", [machine.GEMM_DTYPE_VARIABLE, machine.INT8_KERNEL_VARIABLE, machine.FAST_PATH_VARIABLE])
def test_doctor_bad_forcing_is_one_line(variable, monkeypatch, capsys):
    monkeypatch.setenv(variable, "fastest")
    code, lines, err = doctor(capsys)
    assert code == 2 and err.count("\n") == 1 and f"{variable}='fastest': choose one of" in err
