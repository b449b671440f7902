"""benchmarks/perf_benchmark.py's ONNX Runtime variants compute what HF computes (their speed is the
benchmark's business, never asserted here)."""

import importlib.util

import onnx
import torch

from bertl11 import resolve_model
from bertl11.compare import pcc
from bertl11.perf import hf_logits
from conftest import REPO, encode

spec = importlib.util.spec_from_file_location("perf_benchmark", REPO / "benchmarks" / "perf_benchmark.py")
perf_benchmark = importlib.util.module_from_spec(spec)
spec.loader.exec_module(perf_benchmark)


def test_onnx_runtime_variants_match_hf(tmp_path, squad_pairs):
    source = resolve_model("tiny")
    hf32 = source.hf_model()
    batch = encode(source.tokenizer, squad_pairs[:3])
    inputs = tuple(batch[name] for name in perf_benchmark.INPUT_NAMES)
    assert batch["attention_mask"].sum(1).unique().numel() > 1, "padding must be exercised"
    reference = hf_logits(hf32, inputs)
    runners = perf_benchmark.onnx_runners(hf32, source.shape, inputs, 1, tmp_path)
    assert not hf32.training, "exporting must leave the caller's model in eval mode"
    fused = {node.op_type for node in onnx.load(str(tmp_path / "ort-fp32.onnx")).graph.node}
    assert {"Attention", "SkipLayerNormalization"} <= fused, "the transformers optimizer fused nothing"
    for name, minimum in (("ort-fp32", 0.99999), ("ort-int8", 0.99)):
        start, end = runners[name](*inputs)
        assert pcc(start, reference[0]) >= minimum and pcc(end, reference[1]) >= minimum, name
        assert torch.equal(start.argmax(-1), reference[0].argmax(-1)) or name == "ort-int8"


def test_the_onednn_breakdown_reads_onednn_s_own_lines():
    """A dense -> oneDNN -> dense round trip runs oneDNN reorders, which its verbose mode reports and timed."""
    x = torch.randn(512, 512)
    wall, seconds = perf_benchmark.onednn_breakdown(lambda t: t.to_mkldnn().to_dense(), (x,))
    assert "reorder" in {kind for kind, _ in seconds}
    assert 0 < sum(seconds.values()) <= wall


def test_the_onnx_runtime_breakdown_names_the_fused_nodes(tmp_path, squad_pairs):
    source = resolve_model("tiny")
    batch = encode(source.tokenizer, squad_pairs[:2])
    inputs = tuple(batch[name] for name in perf_benchmark.INPUT_NAMES)
    runners = perf_benchmark.onnx_runners(source.hf_model(), source.shape, inputs, 1, tmp_path, profile=True)
    wall, seconds = perf_benchmark.ort_breakdown(runners["ort-fp32"], inputs)
    assert {"Attention", "SkipLayerNormalization"} <= {op for op, _ in seconds}
    assert 0 < sum(seconds.values()) <= wall
    assert runners["ort-fp32"].session.get_session_options().enable_profiling is False, "the timed session profiles"


def test_the_profiler_breakdown_names_torch_s_ops():
    x = torch.randn(256, 256)
    wall, seconds = perf_benchmark.profiler_breakdown(lambda a: a @ a, (x,))
    assert "aten::mm" in {op for op, _ in seconds}
    assert 0 < sum(seconds.values()) <= wall
