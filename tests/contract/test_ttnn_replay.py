"""The contract tier that executes: whole forwards recorded through `TtnnOps` (ttnn_standin.py), every distinct
call replayed against the real ttnn 0.81 in the contract environment (ttnn_replay.py), each in its own process.

Covered: BERT-large at batch 8 on an n150 and at batch 12 on a p150 (COL_MAJOR), every run config; MiniLM (head size
32) on an n150 in every config; the tiny model in every interleaved config (the sharded one refuses it,
test_standin.py); three traced batches on one chip (DRAM staging, reshards into the trace inputs, events, non-blocking
reads) in a sharded and two interleaved configs; a traced forward on an n300's two chips (the mesh mappers).
Every matmul, linear, softmax and layernorm call carries the compute kernel config its run config gives its op on
the chip's architecture, as the real class holds it.
The tier prints one line: `ttnn replay: N calls replayed against ttnn X, M distinct, K rejected`.
"""

import importlib.util
import json
import shutil
import subprocess
import sys

import pytest

from bertl11.backends.ttnn.program_configs import COMPUTE_KERNEL_CONFIG_CLASSES
from bertl11.config import SEED_COMPUTE, TT_CONFIGS, get_run_config
from bertl11.ops import OPS
from conftest import SUMMARY_PROPERTY
from tt_env import HERE, tt_environment, tt_python  # noqa: F401 (a fixture)
from ttnn_standin import StandinTtnn, call_key, distinct_calls, model_shape, record_forward

pytestmark = pytest.mark.ttnn

BACKEND = HERE.parents[1] / "bertl11" / "backends" / "ttnn"
INTERLEAVED = [c for c in TT_CONFIGS if get_run_config(c).memory != "SHARDED"]
# (architecture, reported grid, model, batch, configs, trace, mesh): what the tier records.
RECORDINGS = [
    ("wormhole_b0", (8, 8), "large", 8, TT_CONFIGS, False, (1, 1)),
    ("blackhole", (13, 10), "large", 12, TT_CONFIGS, False, (1, 1)),
    ("wormhole_b0", (8, 8), "minilm", 8, TT_CONFIGS, False, (1, 1)),
    ("wormhole_b0", (8, 8), "tiny", 8, INTERLEAVED, False, (1, 1)),
    ("wormhole_b0", (8, 8), "large", 8, ("BFLOAT8_B-SHARDED", "BFLOAT8_B-L1", "BFLOAT16-DRAM"), True, (1, 1)),
    ("wormhole_b0", (8, 8), "large", 16, ("BFLOAT8_B-SHARDED",), True, (1, 2)),
]
WORKERS = 2  # replay processes side by side (each forks one child per call)
# The ttnn functions that compute on the Tensix cores, and so take a compute kernel config.
COMPUTING = ("linear", "matmul", "layer_norm", "scale_mask_softmax_in_place")


def record(tmp_path, recordings=RECORDINGS, backend=None) -> list[dict]:
    """Every call of every recording, each with the run it came from (`run`: [architecture, run config])."""
    calls = []
    for i, (arch, grid, model, batch, configs, trace, mesh) in enumerate(recordings):
        for config in configs:
            standin = StandinTtnn(arch, grid, chips=mesh[0] * mesh[1])
            cache = tmp_path / f"cache-{i}-{config}"
            record_forward(standin, model_shape(model), config, batch, cache, backend=backend, trace=trace, mesh=mesh,
                           batches=3 if trace else 1)
            calls += [{**call, "run": [arch, config]} for call in standin.calls]
    return calls


def replay(tt_python, calls: list[dict], tmp_path) -> dict:
    """The distinct calls, split over WORKERS replay processes; their verdicts, in order, and the ttnn version."""
    distinct = distinct_calls(calls)
    jobs = []
    for w in range(WORKERS):
        path = tmp_path / f"calls-{w}.json"
        path.write_text(json.dumps(distinct[w::WORKERS]))
        out = tmp_path / f"verdicts-{w}.json"
        jobs.append((subprocess.Popen([str(tt_python), str(HERE / "ttnn_replay.py"), str(path), str(out)], env=tt_environment(),
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), out))
    reports = []
    for process, out in jobs:
        log, _ = process.communicate(timeout=900)
        assert process.returncode == 0, log[-3000:]
        reports.append(json.loads(out.read_text()))
    results = [None] * len(distinct)
    for w, report in enumerate(reports):
        results[w::WORKERS] = report["results"]
    return {"ttnn": reports[0]["ttnn"], "results": results, "recorded": len(calls), "distinct": len(distinct)}


def rejected(report) -> list[str]:
    return [f"{r['function']} at {r['where']}: {r['message']}" for r in report["results"] if r["verdict"] != "pass"]


@pytest.fixture(scope="module")
def replayed(tt_python, tmp_path_factory):
    """Every recording's calls and their replay, shared by the tests below."""
    tmp_path = tmp_path_factory.mktemp("replay")
    calls = record(tmp_path)
    return calls, replay(tt_python, calls, tmp_path)


def op_of(call) -> str | None:
    """The model op a recorded call was made for: the first backend method on its stack that is one ("_linear < qkv")."""
    frames = call["where"].split(" (model.py")[0].split(" < ")
    return next((name for name in (frame.rsplit(" ", 1)[-1] for frame in frames) if name in OPS), None)


def test_every_recorded_call_is_accepted_by_ttnn(replayed, record_property):
    calls, report = replayed
    bad = rejected(report)
    line = (f"ttnn replay: {report['recorded']} calls replayed against ttnn {report['ttnn']}, {report['distinct']} distinct, "
            f"{len(bad)} rejected")
    record_property(SUMMARY_PROPERTY, line)
    print(line)
    assert not bad, "\n".join(bad[:20])
    assert report["recorded"] >= 200 and report["distinct"] >= 200
    replayed = {r["function"] for r in report["results"]}
    assert {"linear", "matmul", "layer_norm", "scale_mask_softmax_in_place", "dump_tensor", "load_tensor", "execute_trace",
            "copy_host_to_device_tensor", "experimental.split_query_key_value_and_split_heads",
            "transformer.split_query_key_value_and_split_heads", "to_memory_config", "record_event", "wait_for_event",
            "event_synchronize", "from_device", "shard_tensor_to_mesh_mapper", "concat_mesh_to_tensor_composer",
            "cluster.get_cluster_type", "deallocate"} <= replayed
    # Most calls reach ttnn's own "needs a device" check; the rest run on the host (files, views) or bind.
    verdicts = [r["message"] for r in report["results"]]
    assert sum(v.startswith("needs a device") for v in verdicts) >= 100


def test_every_computing_call_has_its_ops_compute_kernel_config(replayed):
    """Each matmul, linear, softmax and layernorm call of every recording passes a compute kernel config in its
    architecture's class whose fields, as the real ttnn object reads them back, are the run config's for that op."""
    calls, report = replayed
    replayed_as = dict(zip(map(call_key, distinct_calls(calls)), report["results"]))
    checked = set()
    for call in calls:
        if call["function"] not in COMPUTING:
            continue
        (arch, config), op = call["run"], op_of(call)
        result = replayed_as[call_key(call)]
        expected = {"class": COMPUTE_KERNEL_CONFIG_CLASSES[arch], "fields": get_run_config(config).kernel_config(op, arch)}
        assert result["verdict"] == "pass" and result["compute_kernel_config"] == expected, (config, call["where"], result)
        checked.add((arch, op))
    assert checked == {(arch, op) for arch in ("wormhole_b0", "blackhole") for op in SEED_COMPUTE}


def planted_backend(tmp_path):
    """The backend package with E1 and E2 back (dumps through a .tmp temporary; the 4-D QKV output handed to the
    interleaved split), copied to a directory of the same name and loaded as a package of its own."""
    copy = tmp_path / "planted" / "bertl11" / "backends" / "ttnn"
    shutil.copytree(BACKEND, copy, ignore=shutil.ignore_patterns("__pycache__"))
    e1 = "self.ttnn.dump_tensor(str(staging.path / file_name), host)"
    e2 = "fused = ttnn.reshape(qkv, (shape[0], shape[2], shape[3]))"
    weights, ops = (copy / "weights.py").read_text(), (copy / "ops.py").read_text()
    assert e1 in weights and e2 in ops
    through_tmp = ("temporary = staging.path / (file_name + '.tmp'); self.ttnn.dump_tensor(str(temporary), host); "
                   "temporary.rename(staging.path / file_name)")
    (copy / "weights.py").write_text(weights.replace(e1, through_tmp))
    (copy / "ops.py").write_text(ops.replace(e2, "fused = qkv"))
    name = "bertl11.backends.ttnn_planted"
    spec = importlib.util.spec_from_file_location(name, copy / "__init__.py", submodule_search_locations=[str(copy)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its modules import each other through it
    try:
        spec.loader.exec_module(module)
    finally:
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[loaded]
    return module


def test_the_replay_catches_planted_bugs(tt_python, tmp_path):
    calls = record(tmp_path, [("wormhole_b0", (8, 8), "tiny", 8, ("BFLOAT8_B-DRAM",), False, (1, 1))], planted_backend(tmp_path))
    bad = rejected(replay(tt_python, calls, tmp_path))
    assert any(b.startswith("dump_tensor") and "must have .tensorbin extension" in b for b in bad), bad
    assert any(b.startswith("transformer.split_query_key_value_and_split_heads") and "expected 3 dimensions" in b
               and "split_heads" in b.split(":", 1)[0] for b in bad), bad
    assert all(b.startswith(("dump_tensor", "transformer.split")) for b in bad), bad  # nothing else was touched
