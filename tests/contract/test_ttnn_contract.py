"""The contract tier: the ttnn backend and the plan against the real ttnn package (0.81, tests/contract/requirements.txt).

ttnn lives in its own environment (.venv-tt: Python 3.12, no torch), so each check runs `ttnn_probe.py` there as a
subprocess, in ttnn's mock-cluster mode (a Wormhole n150 descriptor, mock_cluster/), and compares here:

- every `ttnn.` name the backend (bertl11/backends/ttnn/) uses exists, and every keyword it passes is one the binding accepts
  (nanobind signatures; Python signatures for ttnn's Python-level functions);
- the program configs every plan produces construct with the real classes and read back the same fields;
- ttnn's host encodings (BFLOAT8_B packing, bfloat16 tile layout, as dump_tensor writes them) equal bertl11.bfp8's;
- without a card, ttnn fails the way the backend expects (RuntimeError "No chips detected").

Not checkable without a chip: any op actually running (shapes/shard specs ttnn derives on device, numerics of device
kernels, L1 allocation), open_device itself, program-cache behaviour, ttnn.to_device/from_device.
"""

import ast
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from bertl11 import bfp8
from bertl11.backends.ttnn.program_configs import COMPUTE_KERNEL_CONFIG_CLASSES, program_config_spec
from bertl11.cards import CARDS
from bertl11.config import KERNEL_CONFIG_FIELDS, MATH_FIDELITIES, RUN_CONFIGS
from bertl11.plan import make_plan
from tt_env import tt_environment, tt_python  # noqa: F401 (a fixture)

pytestmark = pytest.mark.ttnn

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BACKEND = REPO / "bertl11" / "backends" / "ttnn"
# Methods the backend calls on objects ttnn returns (a device, a tensor, a cluster type): checked on their classes.
OBJECT_METHODS = [("MeshDevice", "compute_with_storage_grid_size"), ("MeshDevice", "enable_program_cache"),
                  ("Tensor", "memory_config"), ("Tensor", "padded_shape"), ("cluster.ClusterType.N300", "name")]


def backend_source() -> str:
    """Every module of the backend package, one after the other."""
    return "\n".join(path.read_text() for path in sorted(BACKEND.glob("*.py")))


def probe(tt_python, *args, stdin=None, mock=True):
    done = subprocess.run([str(tt_python), str(HERE / "ttnn_probe.py"), *args], input=stdin, capture_output=True,
                          text=True, env=tt_environment(mock), timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def _ttnn_chain(node):
    """'a.b' for an expression ttnn.a.b / self.ttnn.a.b, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
        if isinstance(node, ast.Attribute) and node.attr == "ttnn" and isinstance(node.value, ast.Name) and node.value.id == "self":
            return ".".join(reversed(parts))
    if isinstance(node, ast.Name) and node.id == "ttnn" and parts:
        return ".".join(reversed(parts))
    return None


def ttnn_usage(source: str):
    """[[path, keywords, line]] for every ttnn name the source uses; calls carry their keyword names. A ** argument
    would hide keywords from this check, so it is refused."""
    found = {}
    calls = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            path = _ttnn_chain(node.func)
            if path:
                assert all(k.arg for k in node.keywords), f"line {node.lineno}: ** arguments hide keywords from the contract check"
                found[(path, tuple(sorted(k.arg for k in node.keywords)), node.lineno)] = None
                calls.add(id(node.func))
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and not isinstance(getattr(node, "ctx", None), ast.Store):
            path = _ttnn_chain(node)
            if path and not any(p == path for p, _, _ in found):
                found[(path, (), node.lineno)] = None
    return [[path, list(keywords), line] for path, keywords, line in found]


def dynamic_names(source: str):
    """Names the backend reaches with getattr(ttnn, ...): dtypes of every run config, default program configs
    (string literals), the math fidelities and the fused activation; the cluster types the cards name; and the
    compute kernel config class, with its fields as keywords, of every architecture ttnn 0.81 opens (Grayskull's
    class went with Grayskull)."""
    dtypes = {getattr(c, f) for c in RUN_CONFIGS.values() if not c.torch_only for f in ("weights", "activations")} | {"bfloat16"}
    literals = {n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                and n.value.endswith("ProgramConfig")}
    clusters = {f"cluster.ClusterType.{name}" for card in CARDS.values() for name in card.clusters}  # cards.card_for_arch
    fidelities = {f"MathFidelity.{name}" for name in MATH_FIDELITIES}
    names = [[name, [], 0] for name in sorted(dtypes | literals | clusters | fidelities | {"UnaryOpType.GELU"})]
    arches = sorted({card.arch for card in CARDS.values() if card.ttnn_supported})
    return names + [[COMPUTE_KERNEL_CONFIG_CLASSES[arch], list(KERNEL_CONFIG_FIELDS[arch]), 0] for arch in arches]


def all_program_configs():
    specs = {}
    for card in CARDS.values():
        for batch in card.batches():
            for config in (n for n, c in RUN_CONFIGS.items() if not c.torch_only):
                for op in make_plan(card, batch, config).ops.values():
                    name, kwargs = program_config_spec(op.program)
                    if name:
                        specs[json.dumps([name, kwargs], sort_keys=True)] = [name, kwargs]
    return list(specs.values())


def check_api(tt_python, tmp_path, source: str):
    request = {"names": ttnn_usage(source) + dynamic_names(source), "methods": OBJECT_METHODS, "program_configs": all_program_configs()}
    out = tmp_path / "api.json"
    probe(tt_python, "api", str(out), stdin=json.dumps(request))
    return json.loads(out.read_text())


def test_backend_uses_only_what_ttnn_has(tt_python, tmp_path):
    source = backend_source()
    usage = {path for path, _, _ in ttnn_usage(source)}
    assert {"linear", "matmul", "layer_norm", "experimental.split_query_key_value_and_split_heads", "dump_tensor"} <= usage
    report = check_api(tt_python, tmp_path, source)
    assert report["missing"] == [] and report["bad_keywords"] == [] and report["config_errors"] == [], report
    assert report["checked_names"] >= 40 and report["checked_keywords"] >= 50 and report["configs"] >= 10


def test_a_misspelling_fails_the_contract(tt_python, tmp_path):
    source = backend_source()
    assert "ttnn.layer_norm(" in source and "residual_input_tensor=matched" in source
    # The first layer_norm (the embeddings') loses its name; the add+layernorm's keyword is misspelt.
    broken = source.replace("ttnn.layer_norm(", "ttnn.layer_nrom(", 1).replace("residual_input_tensor=matched", "residual_tensor=matched", 1)
    report = check_api(tt_python, tmp_path, broken)
    assert any(m.startswith("ttnn.layer_nrom") for m in report["missing"])
    assert any("residual_tensor=" in b for b in report["bad_keywords"])


def test_host_formats_match_bfp8(tt_python, tmp_path):
    probe(tt_python, "formats", str(tmp_path))
    x = torch.from_numpy(np.load(tmp_path / "inputs.npy", allow_pickle=False))
    ttnn_bytes = (tmp_path / "bfloat8_b.bin").read_bytes()
    ours = bfp8.pack(x).numpy().tobytes()
    assert len(ours) == len(ttnn_bytes) == bfp8.packed_size(x.shape)
    mismatches = [i for i, (a, b) in enumerate(zip(ours, ttnn_bytes)) if a != b]
    assert not mismatches, f"{len(mismatches)} bytes differ, first at {mismatches[:5]}"
    values = torch.from_numpy(np.load(tmp_path / "bfloat8_b_values.npy", allow_pickle=False))
    assert torch.equal(bfp8.quantize(x), values)
    assert torch.equal(bfp8.unpack(ttnn_bytes, x.shape), values)
    # bfloat16 tile layout: 32x32 tiles row-major, each four 16x16 faces (docs/sources.md section 2), values as bf16.
    faces = x.to(torch.bfloat16).reshape(2, 2, 16, 3, 2, 16).permute(0, 3, 1, 4, 2, 5)
    assert faces.contiguous().view(torch.int16).numpy().tobytes() == (tmp_path / "bfloat16_tile.bin").read_bytes()
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["load_roundtrip"]
    # The cache header's ttnn version (backend.ttnn_version) comes from the package metadata: there is no __version__.
    assert not report["has_version_attribute"] and report["metadata_version"].startswith("0.81")


def test_no_card_fails_as_the_backend_expects(tt_python, tmp_path):
    out = tmp_path / "no_card.json"
    probe(tt_python, "no-card", str(out), mock=False)
    result = json.loads(out.read_text())
    assert result["raised"] == "RuntimeError" and "No chips detected" in result["message"]
