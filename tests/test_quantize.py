"""The fast path's int8 linears (bertl11.quantize): quantisation error, and the int8 cache beside the weight
cache: a later load verifies it and runs no calibration, and a damaged one is rebuilt with its reason.

That the int8 linears answer like HF on real pretrained weights is test_perf.py's (every kernel, forced).
"""

import json

import pytest
import torch

import bertl11.backends.fast as fast_backend
from bertl11 import QAModel, get_run_config, machine, resolve_model
from bertl11.cache import int8_cache, load_or_convert
from bertl11.quantize import INT8_LINEARS, load_or_quantize, quantize_columns, quantize_rows
from bertl11.verified import MANIFEST, Staleness

CONFIG = get_run_config("BFLOAT8_B-SHARDED")
KERNELS = [k for k in INT8_LINEARS if k != "fbgemm" or "fbgemm" in torch.backends.quantized.supported_engines]


def test_quantize_rows_error_is_within_half_a_step():
    x = torch.randn(6, 64, generator=torch.Generator().manual_seed(0)) * torch.logspace(-2, 2, 6)[:, None]
    skip = torch.tensor([3, 17])
    x[:, skip] = 50 * x.abs().amax(dim=1, keepdim=True)  # outliers that must not set the scale
    rows, scale = quantize_rows(x, skip)
    kept = torch.ones(64, dtype=torch.bool)
    kept[skip] = False
    expected_scale = x[:, kept].abs().amax(dim=1, keepdim=True) / 127
    assert torch.allclose(scale, expected_scale)
    error = (rows.float() * scale - x)[:, kept].abs()
    assert bool((error <= scale * (0.5 + 1e-4)).all())  # the slack covers float32 rounding of q * scale
    assert bool((rows[:, skip].abs() == 127).all()), "skipped channels saturate"


def test_quantize_columns_error_is_within_half_a_step():
    w = torch.randn(64, 8, generator=torch.Generator().manual_seed(0)) * torch.logspace(-3, 1, 8)
    q, scale = quantize_columns(w)
    assert q.dtype == torch.int8 and torch.allclose(scale, w.abs().amax(dim=0) / 127)
    assert bool(((q.float() * scale - w).abs() <= scale * (0.5 + 1e-4)).all())


@pytest.fixture(scope="module")
def source():
    return resolve_model("tiny")


@pytest.fixture
def calibrations(monkeypatch):
    """Counts the calibration forwards the backend runs."""
    calls = []
    record = fast_backend.channel_maxima

    def counted(*args, **kwargs):
        calls.append(1)
        return record(*args, **kwargs)

    monkeypatch.setattr(fast_backend, "channel_maxima", counted)
    return calls


@pytest.mark.parametrize("kernel", KERNELS)
def test_a_second_load_uses_the_int8_cache_and_does_not_calibrate(source, tmp_path, kernel, calibrations, monkeypatch):
    monkeypatch.setenv(machine.INT8_KERNEL_VARIABLE, kernel)
    first = QAModel.load(source, CONFIG.name, fast=True, cache_dir=tmp_path)
    directory = tmp_path / "tiny" / CONFIG.name / "int8" / kernel
    assert calibrations == [1] and first.ops.int8.kernel == kernel
    assert first.load_report.detail.endswith(f"; quantised into {directory}")
    second = QAModel.load(source, CONFIG.name, fast=True, cache_dir=tmp_path)
    assert calibrations == [1], "the second load calibrated again"
    assert second.load_report.detail.endswith(f"; loaded from {directory}")
    ids = torch.randint(1000, 30000, (2, 24), generator=torch.Generator().manual_seed(0))
    args = (ids, torch.zeros_like(ids), torch.ones_like(ids))
    for a, b in zip(first(*args), second(*args)):
        assert torch.equal(a, b), "the cached int8 linears compute what the freshly quantised ones did"
    manifest = json.loads((directory / MANIFEST).read_text())
    assert manifest["kernel"] == kernel and manifest["source_fingerprint"] == source.fingerprint
    assert sorted(manifest["files"]) == [f"layer_{i:02d}.safetensors" for i in range(source.shape.num_layers)]
    flip_a_bit(directory)
    third = QAModel.load(source, CONFIG.name, fast=True, cache_dir=tmp_path)
    assert calibrations == [1, 1], "a corrupted int8 cache is rebuilt"
    assert third.load_report.detail.endswith(f"; rebuilt {directory}: layer_01.safetensors does not match its sha256 (corrupted)")


def flip_a_bit(directory):
    path = directory / "layer_01.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x04
    path.write_bytes(bytes(data))


def edit_manifest(**changes):
    def edit(directory):
        manifest = json.loads((directory / MANIFEST).read_text())
        (directory / MANIFEST).write_text(json.dumps({**manifest, **changes}))

    return edit


DAMAGE = {
    "corrupted": (flip_a_bit, Staleness.CORRUPTED, "layer_01.safetensors does not match its sha256"),
    "truncated": (lambda d: (d / "layer_00.safetensors").write_bytes((d / "layer_00.safetensors").read_bytes()[:-8]),
                  Staleness.TRUNCATED, "layer_00.safetensors has"),
    "missing file": (lambda d: (d / "layer_00.safetensors").unlink(), Staleness.MISSING, "layer_00.safetensors is missing"),
    "absent": (lambda d: (d / MANIFEST).unlink(), Staleness.ABSENT, "no cache at"),
    "other kernel": (edit_manifest(kernel="another"), Staleness.HEADER, "built for kernel 'another'"),
    "other weights": (edit_manifest(source_fingerprint="0" * 64), Staleness.HEADER, "source fingerprint differs"),
    "other format": (edit_manifest(int8_format_version=0), Staleness.HEADER, "built for int8_format_version 0"),
    "a layer left out": (lambda d: edit_manifest(files={"layer_00.safetensors": json.loads((d / MANIFEST).read_text())
                                                        ["files"]["layer_00.safetensors"]})(d),
                         Staleness.MALFORMED, "the int8 linears do not match the model's"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_int8_cache_is_rebuilt(source, tmp_path, damage, calibrations):
    harm, kind, reason = DAMAGE[damage]
    kernel = KERNELS[-1]
    flat = {name: t.float() for name, t in load_or_convert(source, CONFIG, tmp_path)[0].items()}
    cache = int8_cache(tmp_path, source, CONFIG)
    record = lambda *inputs: fast_backend.channel_maxima(*inputs, shape=source.shape)  # noqa: E731
    good, outcome = load_or_quantize(flat, source.shape, kernel, record, cache)
    assert not outcome.hit and outcome.stale.kind is Staleness.ABSENT and calibrations == [1]
    harm(outcome.directory)
    rebuilt, outcome = load_or_quantize(flat, source.shape, kernel, record, cache)
    assert not outcome.hit and outcome.stale.kind is kind and reason in str(outcome.stale) and calibrations == [1, 1]
    built = f"quantised into {outcome.directory}" if kind is Staleness.ABSENT else f"rebuilt {outcome.directory}: {outcome.stale}"
    assert outcome.detail == built and "\n" not in outcome.detail
    loaded, outcome = load_or_quantize(flat, source.shape, kernel, record, cache)
    assert outcome.hit and calibrations == [1, 1]
    generator = torch.Generator().manual_seed(1)
    for name, linear in good.items():
        tokens = torch.randn(40, flat[name].shape[0], generator=generator)
        assert torch.equal(linear(tokens.clone()), loaded[name](tokens.clone())), name



def test_an_unwritable_int8_cache_quantises_in_memory_and_says_so(source, tmp_path, calibrations, monkeypatch):
    """Where the int8 directory cannot be made (here a file stands in its way; a read-only cache root fails alike),
    the int8 linears are quantised in memory and the load detail says so: the load does not fail."""
    monkeypatch.setenv(machine.INT8_KERNEL_VARIABLE, KERNELS[-1])
    blocked, writable = tmp_path / "blocked", tmp_path / "writable"
    QAModel.load(source, CONFIG.name, cache_dir=blocked)  # the weight cache, which the fast path reads
    (blocked / "tiny" / CONFIG.name / "int8").write_text("in the way")
    model = QAModel.load(source, CONFIG.name, fast=True, cache_dir=blocked)
    assert calibrations == [1]
    detail = model.load_report.detail
    assert detail.startswith("loaded from ") and "\n" not in detail
    assert f"; quantised in memory (cannot write the int8 cache in {blocked / 'tiny' / CONFIG.name / 'int8'}" in detail
    ids = torch.randint(1000, 30000, (2, 24), generator=torch.Generator().manual_seed(0))
    args = (ids, torch.zeros_like(ids), torch.ones_like(ids))
    cached = QAModel.load(source, CONFIG.name, fast=True, cache_dir=writable)
    for a, b in zip(model(*args), cached(*args)):
        assert torch.equal(a, b), "the linears quantised in memory are the ones a cache would hold"
