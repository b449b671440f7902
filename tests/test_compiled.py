"""The fast path's compiled forward (bertl11/compiled.py, backends/fast.py): it answers like HF, it is cached
beside the weight cache and a second process loads it without compiling (it does not even need a compiler),
each choice of `machine.Machine.forward` / `int8_kernel` is forced by its environment variable, and wherever
the compiled forward cannot be had the fast path runs eager and says why, never with a traceback.

Compiling takes minutes on 2 cores, so one package (tiny, the int8 variant) is compiled once for the module.
"""

import csv
import dataclasses
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from bertl11 import QAModel, compiled, machine, resolve_model
from bertl11.cli import main
from bertl11.compare import pcc
from bertl11.errors import UserError
from bertl11.perf import hf_logits
from conftest import encode, run_cli

INT8_CONFIG = "BFLOAT8_B-SHARDED"


@pytest.fixture(scope="module")
def compiled_root(tmp_path_factory):
    """A cache root holding tiny's compiled int8 forward (compiled here, once)."""
    root = tmp_path_factory.mktemp("compiled-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(machine.FAST_PATH_VARIABLE, machine.COMPILED)
        model = QAModel.load(resolve_model("tiny"), INT8_CONFIG, fast=True, cache_dir=root, compile=compiled.BUILD)
    assert model.load_report.detail.endswith(f"compiled into {package_directory(root)}"), model.load_report.detail
    return root


def package_directory(root, config=INT8_CONFIG, variant=compiled.INT8):
    return root / "tiny" / config / "compiled" / variant


@pytest.fixture(scope="module")
def squad_batch(squad_pairs):
    """Real SQuAD pairs padded to the longest: a batch and a sequence length the export never saw."""
    batch = encode(resolve_model("tiny").tokenizer, squad_pairs[:5])
    assert batch["attention_mask"].sum(1).unique().numel() > 1
    return tuple(batch[name] for name in ("input_ids", "token_type_ids", "attention_mask"))


def load(root, config=INT8_CONFIG, policy=compiled.CACHED):
    return QAModel.load(resolve_model("tiny"), config, fast=True, cache_dir=root, compile=policy)


@pytest.fixture
def forced(monkeypatch):
    """Sets the choice variables for one test (conftest leaves the fast path eager by default)."""
    def force(**variables):
        for name in (machine.FAST_PATH_VARIABLE, machine.INT8_KERNEL_VARIABLE):
            monkeypatch.delenv(name, raising=False)
        for name, value in variables.items():
            monkeypatch.setenv(getattr(machine, name), value)

    return force


def test_the_compiled_int8_forward_matches_hf(compiled_root, squad_batch, forced):
    forced(FAST_PATH_VARIABLE=machine.COMPILED)
    model = load(compiled_root)
    assert model.load_report.detail.endswith(f"loaded from {package_directory(compiled_root)}")
    assert model.ops.compiled_forward is not None and model.ops.int8.kernel == compiled.INT8
    assert model.ops.kernel().startswith("int8 qlinear encoder linears") and "; compiled forward (" in model.ops.kernel()
    reference = hf_logits(resolve_model("tiny").hf_model(), squad_batch)
    start, end = model(*squad_batch)
    assert pcc(start, reference[0]) >= 0.999 and pcc(end, reference[1]) >= 0.999
    one = tuple(t[:1, :17] for t in squad_batch)  # batch 1, another length: the same package
    single = hf_logits(resolve_model("tiny").hf_model(), one)
    assert pcc(model(*one)[0], single[0]) >= 0.999


def test_a_second_process_loads_the_package_without_a_compiler(compiled_root, tmp_path):
    """The second process finds no C++ compiler at all: it could not compile, so it runs what the first wrote."""
    report = tmp_path / "perf.csv"
    result = run_cli("perf", "--model", "tiny", "--config", INT8_CONFIG, "--cache-dir", str(compiled_root), "--seq", "96",
                     "--iterations", "1", "--compare", "hf", "--csv", str(report),
                     env={"CXX": "/nonexistent/c++", machine.FAST_PATH_VARIABLE: machine.COMPILED})
    assert result.returncode == 0, result.stderr
    (row,) = list(csv.DictReader(report.open()))
    assert row["Path"] == "fast, compiled"
    assert row["Load Detail"].endswith(f"loaded from {package_directory(compiled_root)}")
    assert float(row["PCC vs HF float32 (start)"]) >= 0.999 and float(row["PCC vs HF float32 (end)"]) >= 0.999
    assert row["Peak Kernel"] == compiled.INT8 and float(row["Utilisation (%)"]) > 0


def test_the_demo_uses_the_compiled_forward_only_when_cached(compiled_root, tmp_path, forced, capsys):
    """12 questions do not pay for a compile (`Machine.compile_policy`): with nothing cached the demo runs eager
    and says why; with the package cached it runs it."""
    forced(FAST_PATH_VARIABLE=machine.COMPILED)
    arguments = ["demo", "--model", "tiny", "--config", INT8_CONFIG, "--fast", "--json"]
    assert main([*arguments, "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert '"cache": "miss (' in out and "eager forward (not compiled yet (no cache at" in out
    assert not (tmp_path / "tiny" / INT8_CONFIG / "compiled").exists()
    assert main([*arguments, "--cache-dir", str(compiled_root)]) == 0
    assert f"loaded from {package_directory(compiled_root)}" in capsys.readouterr().out


def test_compile_policy_weighs_the_run_against_a_compile():
    found = machine.probe()
    per_second = found.rates[found.gemm_dtype().kernel] * 1e9 * torch.get_num_threads()
    assert found.compile_policy(0.5 * machine.COMPILE_SECONDS * per_second) == compiled.CACHED
    assert found.compile_policy(2 * machine.COMPILE_SECONDS * per_second) == compiled.BUILD


def test_an_unwritable_cache_compiles_in_memory_and_says_so(compiled_root, tmp_path, forced, monkeypatch, squad_batch):
    """Where the compiled directory cannot be made (here a file stands in its way; a read-only root fails alike),
    the package is compiled into a scratch directory, loaded, and the load detail says so."""
    forced(FAST_PATH_VARIABLE=machine.COMPILED)
    assert load(tmp_path, policy=compiled.NEVER)  # the weight cache itself is there and readable
    (tmp_path / "tiny" / INT8_CONFIG / "compiled").write_text("in the way")
    scratch = set(Path(tempfile.gettempdir()).glob("bertl11-compiled-*"))
    compiles = []

    def compile_from_the_module_package(module, example, max_seq, int8, float_linears, path):
        compiles.append(int8)
        shutil.copy(package_directory(compiled_root) / compiled.PACKAGE, path)

    monkeypatch.setattr(compiled, "compile_package", compile_from_the_module_package)
    model = load(tmp_path, policy=compiled.BUILD)
    assert compiles == [True]
    assert "; compiled in memory (cannot write the compiled forward in " in model.load_report.detail
    assert "\n" not in model.load_report.detail
    assert set(Path(tempfile.gettempdir()).glob("bertl11-compiled-*")) == scratch, "the scratch directory is removed"
    expected = load(compiled_root)(*squad_batch)
    assert all(torch.equal(a, b) for a, b in zip(model(*squad_batch), expected))


@pytest.mark.parametrize("failure", ["no compiler", "compile fails"])
def test_without_a_compiled_forward_the_fast_path_runs_eager_and_says_why(failure, tmp_path, forced, monkeypatch, squad_batch):
    forced(FAST_PATH_VARIABLE=machine.COMPILED)
    if failure == "no compiler":
        monkeypatch.setenv("CXX", "/nonexistent/c++")
        reason = "no C++ compiler (/nonexistent/c++) on the PATH: inductor needs one to compile"
    else:
        def fails(*args, **kwargs):
            raise RuntimeError("a lowering inductor lacks\nand its long explanation")

        monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", fails)
        reason = "(RuntimeError: a lowering inductor lacks)"
    model = load(tmp_path, "FLOAT32", compiled.BUILD)
    assert model.ops.compiled_forward is None and model.ops.way.kernel == machine.EAGER
    assert reason in model.ops.kernel() and reason in model.load_report.detail and "\n" not in model.load_report.detail
    assert not (tmp_path / "tiny" / "FLOAT32" / "compiled" / "float32").exists()
    reference = hf_logits(resolve_model("tiny").hf_model(), squad_batch)
    start, _ = model(*squad_batch)
    assert pcc(start, reference[0]) >= 0.9999


def test_each_forced_choice(forced):
    found = machine.probe()
    forced(FAST_PATH_VARIABLE=machine.EAGER)
    assert found.forward() == machine.Choice(machine.EAGER, f"forced by {machine.FAST_PATH_VARIABLE}")
    forced(FAST_PATH_VARIABLE=machine.COMPILED)
    assert found.forward().kernel == machine.COMPILED
    for kernel, way in (("qlinear", machine.COMPILED), ("fbgemm", machine.EAGER), ("int_mm", machine.EAGER)):
        forced(INT8_KERNEL_VARIABLE=kernel)
        assert found.forward() == machine.Choice(way, f"{machine.INT8_KERNEL_VARIABLE}={kernel} runs {way}")
        other = machine.EAGER if way == machine.COMPILED else machine.COMPILED
        if kernel in found.rates:
            assert found.int8_kernel(way) == machine.Choice(kernel, f"forced by {machine.INT8_KERNEL_VARIABLE}")
        assert found.int8_kernel(other) == machine.Choice("none", f"{machine.INT8_KERNEL_VARIABLE}={kernel} runs only {way}")
        forced(INT8_KERNEL_VARIABLE=kernel, FAST_PATH_VARIABLE=other)
        with pytest.raises(UserError, match=f"{machine.INT8_KERNEL_VARIABLE}={kernel} runs {way}, not under"):
            found.forward()


def test_the_unforced_choices_follow_the_probe(forced):
    forced()
    found = machine.probe()
    assert dataclasses.replace(found, compiler=None).forward().kernel == machine.EAGER
    assert dataclasses.replace(found, compiler="/usr/bin/c++").forward().kernel == machine.COMPILED
    float_rate = found.rates[found.gemm_dtype().kernel]
    for way, kernels in machine.INT8_KERNELS_OF.items():
        fast = dataclasses.replace(found, rates={**found.rates, **{k: 10 * float_rate for k in kernels}})
        slow = dataclasses.replace(found, rates={**found.rates, **{k: float_rate for k in kernels}})
        assert fast.int8_kernel(way).kernel in kernels
        assert slow.int8_kernel(way).kernel == "none" and f"no {way} int8 GEMM is" in slow.int8_kernel(way).reason


def test_profile_times_ops_one_by_one_even_when_the_compiled_forward_is_forced(forced, tmp_path):
    forced(FAST_PATH_VARIABLE=machine.COMPILED)
    report = tmp_path / "ops.csv"
    assert main(["profile", "--model", "tiny", "--config", "FLOAT32", "--seq", "32", "--iterations", "1",
                 "--cache-dir", str(tmp_path), "--csv", str(report)]) == 0
    assert len(list(csv.DictReader(report.open()))) == 2 * 11 + 2


@pytest.mark.slow
@pytest.mark.parametrize("config, minimum", [("FLOAT32", 0.9999), (INT8_CONFIG, 0.99)])
def test_the_compiled_forward_matches_hf_on_pretrained_weights(config, minimum, squad_pairs, forced, tmp_path):
    """minilm carries the outlier channels real BERTs have: the int8 variant keeps them out of its activation scale."""
    forced(FAST_PATH_VARIABLE=machine.COMPILED)
    source = resolve_model("minilm")
    model = QAModel.load(source, config, fast=True, cache_dir=tmp_path, compile=compiled.BUILD)
    assert model.ops.compiled_forward is not None
    batch = encode(source.tokenizer, squad_pairs[:6])
    inputs = tuple(batch[name] for name in ("input_ids", "token_type_ids", "attention_mask"))
    reference = hf_logits(source.hf_model(), inputs)
    start, end = model(*inputs)
    assert pcc(start, reference[0]) >= minimum and pcc(end, reference[1]) >= minimum
    if config == "FLOAT32":
        assert torch.equal(start.argmax(-1), reference[0].argmax(-1))
