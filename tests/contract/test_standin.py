"""The ttnn backend's calls, recorded by the stand-in (ttnn_standin.py): what a card would be asked to do.

These need torch and bertl11 only; test_ttnn_replay.py replays the same recordings against the real ttnn.
"""

import importlib.metadata
import json

import pytest
import torch

from bertl11.config import TT_CONFIGS, get_run_config
from bertl11.errors import UserError
from bertl11.model import bert_qa
from bertl11.plan import PlanError
from bertl11.verified import MANIFEST, Staleness, StaleCache
from ttnn_standin import StandinTtnn, Sym, model_shape, record_forward, recording

LARGE = model_shape("large")
INTERLEAVED_CONFIGS = [c for c in TT_CONFIGS if get_run_config(c).memory != "SHARDED"]


def calls_of(standin, function):
    return [c for c in standin.calls if c["function"] == function]


def test_dumps_go_through_a_tensorbin_temporary(tmp_path):
    """E1: ttnn.dump_tensor refuses any path not ending in .tensorbin (ttnn/operations/core.py), so files are
    dumped under their own names into the cache's staging directory, which then replaces the cache whole."""
    standin = StandinTtnn()
    record_forward(standin, model_shape("tiny"), "BFLOAT8_B-L1", 8, tmp_path, passes=1)
    dumps = calls_of(standin, "dump_tensor")
    assert dumps and all(c["args"][0].endswith(".tensorbin") for c in dumps), dumps[0]["args"][0]
    written = sorted(p.name for p in (tmp_path / "wormhole_b0").iterdir())
    assert MANIFEST in written and not [n for n in written if n.startswith(".")]  # no temporaries left
    assert len(written) == len(dumps) + 1


@pytest.mark.parametrize("config", INTERLEAVED_CONFIGS)
def test_interleaved_split_gets_rank_3(config, tmp_path):
    """E2: ttnn.transformer.split_query_key_value_and_split_heads takes [B, S, 3H] only (rank 3)."""
    standin = StandinTtnn()
    record_forward(standin, LARGE, config, 8, tmp_path, passes=1)
    splits = calls_of(standin, "transformer.split_query_key_value_and_split_heads")
    assert len(splits) == LARGE.num_layers
    assert {tuple(c["args"][0]["tensor"]["shape"]) for c in splits} == {(8, 384, 3 * 1024)}


def test_sharded_tiny_is_refused_in_one_line(tmp_path):
    """E3: the sharded split moves two heads per core; a model that puts another number there gets a
    one-line error before any device work, not a TT_FATAL at layer 0."""
    standin = StandinTtnn()
    with pytest.raises(PlanError, match="2 heads per core") as refused:
        record_forward(standin, model_shape("tiny"), "BFLOAT8_B-SHARDED", 8, tmp_path, passes=1)
    assert "\n" not in str(refused.value)
    assert not calls_of(standin, "embedding")  # refused before the forward touched the card


def test_cache_header_names_the_installed_ttnn(tmp_path, monkeypatch):
    """C1: ttnn 0.81 has no __version__; the header reads the package metadata, so an upgrade re-converts."""
    real_version = importlib.metadata.version
    installed = {"ttnn": "0.81.1"}
    monkeypatch.setattr(importlib.metadata, "version", lambda name: installed.get(name) or real_version(name))
    shape = model_shape("tiny")
    record_forward(StandinTtnn(), shape, "BFLOAT16-DRAM", 8, tmp_path, passes=1)
    header = json.loads((tmp_path / "wormhole_b0" / MANIFEST).read_text())
    assert header["ttnn"] == "0.81.1"
    again = StandinTtnn()
    record_forward(again, shape, "BFLOAT16-DRAM", 8, tmp_path, passes=1)
    assert calls_of(again, "load_tensor") and not calls_of(again, "dump_tensor")  # same ttnn: the cache is used
    installed["ttnn"] = "0.82.0"
    upgraded = StandinTtnn()
    record_forward(upgraded, shape, "BFLOAT16-DRAM", 8, tmp_path, passes=1)
    assert calls_of(upgraded, "dump_tensor") and not calls_of(upgraded, "load_tensor")


def flip_a_bit(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def edit_manifest(**changes):
    def edit(directory):
        manifest = json.loads((directory / MANIFEST).read_text())
        (directory / MANIFEST).write_text(json.dumps({**manifest, **changes}))

    return edit


TENSORBIN = "bert.encoder.layer.0.attention.self.qkv.weight_BFLOAT16.tensorbin"
TENSORBIN_DAMAGE = {
    "corrupted": (lambda d: flip_a_bit(d / TENSORBIN), Staleness.CORRUPTED, f"{TENSORBIN} does not match its sha256"),
    "truncated": (lambda d: (d / TENSORBIN).write_bytes((d / TENSORBIN).read_bytes()[:-1]), Staleness.TRUNCATED,
                  f"{TENSORBIN} has"),
    "missing file": (lambda d: (d / TENSORBIN).unlink(), Staleness.MISSING, f"{TENSORBIN} is missing"),
    "absent": (lambda d: (d / MANIFEST).unlink(), Staleness.ABSENT, "no cache at"),
    "other QKV groups": (edit_manifest(qkv_groups=99), Staleness.HEADER, "QKV interleaved in 99 groups"),
    "other ttnn": (edit_manifest(ttnn="0.80.0"), Staleness.HEADER, "written by ttnn 0.80.0"),
    "not a JSON object": (lambda d: (d / MANIFEST).write_text("[1, 2]"), Staleness.MALFORMED, "not a JSON object"),
    "cut manifest": (lambda d: (d / MANIFEST).write_text((d / MANIFEST).read_text()[:-3]), Staleness.MALFORMED,
                     "unreadable manifest"),
}


@pytest.mark.parametrize("damage", TENSORBIN_DAMAGE)
def test_a_stale_tensorbin_cache_is_rebuilt_with_its_reason(tmp_path, damage):
    """The .tensorbin cache is a verified directory: each damage has its kind, the backend reports the reason in
    one line (`cache_detail`, which `QAModel.load` adds to its report) and converts again, under the writers' lock."""
    harm, kind, reason = TENSORBIN_DAMAGE[damage]
    shape, directory = model_shape("tiny"), tmp_path / "wormhole_b0"
    first, _ = record_forward(StandinTtnn(), shape, "BFLOAT16-DRAM", 8, tmp_path, passes=1)
    assert first.cache_detail == f"converted into {directory}" and (tmp_path / ".wormhole_b0.lock").exists()
    again = StandinTtnn()
    ops, _ = record_forward(again, shape, "BFLOAT16-DRAM", 8, tmp_path, passes=1)
    assert ops.cache_detail == f"loaded from {directory}" and not calls_of(again, "dump_tensor")
    harm(directory)
    with pytest.raises(StaleCache, match=reason) as stale:
        ops.weights.cache(ops._groups()).verify()
    assert stale.value.kind is kind
    rebuilt = StandinTtnn()
    ops, _ = record_forward(rebuilt, shape, "BFLOAT16-DRAM", 8, tmp_path, passes=1)
    assert calls_of(rebuilt, "dump_tensor") and not calls_of(rebuilt, "load_tensor")
    if kind is Staleness.ABSENT:
        assert ops.cache_detail == f"converted into {directory}"
    else:
        assert ops.cache_detail.startswith(f"rebuilt {directory}: ") and reason in ops.cache_detail
    assert "\n" not in ops.cache_detail
    ops.weights.cache(ops._groups()).verify()


def test_a_rebuilt_safetensors_cache_makes_the_tensorbin_cache_stale(tmp_path):
    shape = model_shape("tiny")
    ops, _ = record_forward(StandinTtnn(), shape, "BFLOAT16-DRAM", 8, tmp_path, passes=1)
    ops.weights.source_manifest = tmp_path / "safetensors-manifest.json"
    ops.weights.source_manifest.write_text('{"rebuilt": true}')
    with pytest.raises(StaleCache, match="the safetensors cache it was converted from changed") as stale:
        ops.weights.cache(ops._groups()).manifest()
    assert stale.value.kind is Staleness.HEADER


def test_embeddings_add_positions_inside_the_layernorm(tmp_path):
    """N1: word + token type in one add; the position embedding is the layernorm's residual input."""
    standin = StandinTtnn()
    record_forward(standin, model_shape("tiny"), "BFLOAT8_B-L1", 8, tmp_path, passes=1)
    embedding_calls = [c for c in standin.calls if " embeddings " in c["where"]]
    assert [c["function"] for c in embedding_calls].count("add") == 1
    norm = next(c for c in embedding_calls if c["function"] == "layer_norm")
    assert norm["kwargs"]["residual_input_tensor"]["tensor"]["shape"] == [8, 384, 128]


@pytest.mark.parametrize("config", ["BFLOAT8_B-SHARDED", "BFLOAT8_B-L1"])
def test_a_forward_releases_what_it_allocates(config, tmp_path):
    """Every device tensor a forward allocates outside the weights is released by the end of the batch:
    anything left would stay in L1 or DRAM, batch after batch, until an allocation fails on the card."""
    standin = StandinTtnn()
    record_forward(standin, LARGE, config, 8, tmp_path, passes=1)
    leaked = standin.leaked()
    assert not leaked, [t.buffer["where"] for t in leaked[:5]]


def test_unknown_grid_gets_its_own_entry():
    """R2 at the backend: a card reporting a grid no entry has is planned on that grid."""
    standin = StandinTtnn("wormhole_b0", (7, 7))
    with recording(standin):
        from bertl11.backends.ttnn import open_chips

        _, card = open_chips(standin)
    assert card.grid == (7, 7) and "7x7" in card.title


@pytest.mark.parametrize("chips, cluster, card", [(1, "N150", "n150"), (2, "N300", "n300"), (8, "T3K", "n300")])
def test_the_card_is_what_ttnn_calls_the_cluster(chips, cluster, card):
    """An n150 and an n300 chip both report 8x8 (ttnn 0.81 gives the n300 ethernet dispatch): ttnn's cluster type tells them apart."""
    from bertl11.backends.ttnn import open_chips

    standin = StandinTtnn("wormhole_b0", (8, 8), chips=chips, cluster=cluster)
    _, opened = open_chips(standin)
    assert opened.name == card
    assert "dispatch_core_config" not in calls_of(standin, "open_mesh_device")[0]["kwargs"]  # ttnn's default per cluster


def test_unknown_architecture_is_refused():
    with pytest.raises(UserError, match="ttnn opened a quasar chip"):
        from bertl11.backends.ttnn import open_chips

        open_chips(StandinTtnn("quasar", (8, 8)))


def indices(standin, function, **kwargs) -> list[int]:
    """Where the calls of `function` (with these keyword values) are in the recording."""
    return [i for i, c in enumerate(standin.calls) if c["function"] == function and all(c["kwargs"].get(k) == v for k, v in kwargs.items())]


def test_trace_captures_once_and_executes_per_batch(tmp_path):
    standin = StandinTtnn()
    ops, (start, end) = record_forward(standin, LARGE, "BFLOAT8_B-SHARDED", 8, tmp_path, passes=1, batches=3, trace=True)
    functions = standin.functions()
    assert functions.count("begin_trace_capture") == functions.count("end_trace_capture") == 1
    executes = calls_of(standin, "execute_trace")
    assert len(executes) == 3 and all(c["kwargs"] == {"cq_id": 0, "blocking": False} for c in executes)
    opened = calls_of(standin, "open_mesh_device")[0]["kwargs"]
    assert opened["num_command_queues"] == 2
    assert opened["trace_region_size"] == 0  # ttnn 0.81 sizes the trace's buffers from the capture itself
    assert start.shape == end.shape == (8, 384)
    # Inside the capture: no host transfer, no compile-time lookups of the inputs (they sit in device buffers).
    begin = functions.index("begin_trace_capture")
    captured = standin.calls[begin + 1:functions.index("end_trace_capture")]
    assert not {"from_torch", "to_torch", "to_device", "copy_host_to_device_tensor", "synchronize_device"} & {c["function"] for c in captured}
    assert sum(c["function"] == "linear" for c in captured) == 4 * LARGE.num_layers + 1
    # Position ids were uploaded once, before the capture, and stay on the device.
    positions = [c for c in standin.calls if "_position_ids" in c["where"]]
    assert [c["function"] for c in positions] == ["from_torch", "to_device"]
    # Closing gives the trace and all its buffers back (3 staging, 3 inputs, the logits): nothing stays allocated.
    assert not standin.leaked()
    released = functions.index("release_trace")
    assert released > max(indices(standin, "to_torch")) and functions[released + 1:].count("deallocate") == 7


def test_three_traced_batches_overlap_on_two_queues(tmp_path):
    """tt-metal's performant runner, batch by batch: queue 1 writes the host inputs into DRAM staging buffers; queue 0
    waits for that, reshards them into the trace's inputs, records the event queue 1 waits for before writing again
    (after the reshard, before execute_trace), runs the trace and reads the logits without blocking. The host waits
    once per batch, for the previous batch's read, after the next batch has been uploaded and started."""
    standin = StandinTtnn()
    record_forward(standin, LARGE, "BFLOAT8_B-SHARDED", 8, tmp_path, passes=1, batches=3, trace=True)
    calls = standin.calls
    executes = indices(standin, "execute_trace")
    host_waits = indices(standin, "event_synchronize")
    assert len(executes) == len(host_waits) == len(indices(standin, "to_torch")) == 3
    assert not indices(standin, "synchronize_device")  # the host never waits for a whole queue
    for batch in (1, 2):  # every batch after the capture
        uploads = [i for i in indices(standin, "copy_host_to_device_tensor") if executes[batch - 1] < i < executes[batch]]
        assert len(uploads) == 3 and all(calls[i]["kwargs"] == {"cq_id": 1} for i in uploads)
        assert all(calls[i]["args"][1]["tensor"]["memory_config"] == {"ttnn": "DRAM_MEMORY_CONFIG"} for i in uploads)
        # batch i+1 is uploaded and running before the host waits for batch i's logits
        assert uploads[0] < executes[batch] < host_waits[batch - 1] < host_waits[batch]
        # queue 1 writes the staging buffers once queue 0 recorded that its reshard of them is done
        wait_upload = uploads[0] - 1
        assert calls[wait_upload]["function"] == "wait_for_event" and calls[wait_upload]["args"][0] == 1
        waited_for = calls[wait_upload]["args"][1]["args"]
        recorded = calls[waited_for[1]]
        assert recorded["function"] == "record_event" and waited_for[0] == 0
        assert calls[waited_for[1] - 1]["function"] == "to_memory_config"  # recorded right after the reshard
        # then: queue 0 waits for the upload, reshards into the trace inputs, records, executes, reads, records
        steps = [c["function"] for c in calls[uploads[-1] + 1:executes[batch] + 3]]
        assert steps == ["record_event", "wait_for_event", *["to_memory_config"] * 3, "record_event", "execute_trace",
                         "from_device", "record_event"]
        reshards = [calls[i] for i in range(uploads[-1] + 3, uploads[-1] + 6)]
        assert all("output_tensor" in c["kwargs"] and c["kwargs"]["memory_config"] == {"ttnn": "L1_MEMORY_CONFIG"} for c in reshards)
        read = calls[executes[batch] + 1]
        assert read["kwargs"] == {"blocking": False, "queue_id": 0}
    # each host wait is for a read's event, in order: batch 0's after batch 1 started, ..., the last at the end
    waited = [calls[i]["args"][0]["args"][1] for i in host_waits]
    assert waited == [executes[b] + 2 for b in range(3)]


def test_every_batch_has_one_host_wait(tmp_path):
    for trace in (False, True):
        standin = StandinTtnn()
        record_forward(standin, model_shape("tiny"), "BFLOAT8_B-L1", 8, tmp_path / str(trace), passes=1, batches=3, trace=trace)
        assert standin.functions().count("event_synchronize") == 3 and "synchronize_device" not in standin.functions()
        assert standin.functions().count("to_torch") == 3


def test_a_trace_region_ttnn_refuses_is_one_line_with_the_size_it_needs(tmp_path, monkeypatch):
    """ttnn reports the size a captured trace needs when its region is too small; the error gives it plus 25%."""
    class SmallRegion(StandinTtnn):
        def _op_end_trace_capture(self, device, trace_id, cq_id=0):
            raise RuntimeError("TT_FATAL @ mesh_trace.cpp:120: get_trace_buffers_size() <= trace_region_size\ninfo:\n"
                               "Creating trace buffers of size 7340032B on MeshDevice 0, but only 4194304B is allocated for trace region.")

    monkeypatch.setenv("BERTL11_TRACE_REGION_BYTES", "4194304")
    standin = SmallRegion()
    with pytest.raises(UserError) as refused:
        record_forward(standin, model_shape("tiny"), "BFLOAT8_B-L1", 8, tmp_path, passes=1, trace=True)
    assert calls_of(standin, "open_mesh_device")[0]["kwargs"]["trace_region_size"] == 4194304
    assert str(refused.value) == ("--trace: the captured trace needs 7340032 B of device memory (ttnn); run again with "
                                  "BERTL11_TRACE_REGION_BYTES=9437184 (that plus 25%, in whole MiB)")
    monkeypatch.setenv("BERTL11_TRACE_REGION_BYTES", "lots")
    with pytest.raises(UserError, match="give the trace region in bytes"):
        record_forward(StandinTtnn(), model_shape("tiny"), "BFLOAT8_B-L1", 8, tmp_path, passes=1, trace=True)


def test_a_new_input_shape_recaptures(tmp_path):
    from bertl11.backends.ttnn import TtnnOps
    from ttnn_standin import bert_parameters

    shape = model_shape("tiny")
    standin = StandinTtnn()
    with recording(standin):
        ops = TtnnOps(shape, get_run_config("BFLOAT8_B-L1"), trace=True)
        params = ops.prepare(bert_parameters(shape))
        for batch in (8, 8, 4):
            ids = torch.ones(batch, 384, dtype=torch.long)
            ops.forward(bert_qa, params, ids, ids * 0, ids, shape)
        ops.close()
    assert standin.functions().count("begin_trace_capture") == 2
    assert standin.functions().count("release_trace") == 2  # the first trace when the shape changed, the second at close


def test_mesh_replicates_weights_and_splits_the_batch(tmp_path):
    """Inputs split along the batch and logits joined with ttnn's current mappers (the wrapper classes are deprecated);
    weights go to every chip from one chip's tensors, as ttnn's as_tensor does for a replicated cache, so a mesh uses
    the .tensorbin cache too: converted at the first start, loaded at the next."""
    standin = StandinTtnn(chips=2)
    ops, (start, _) = record_forward(standin, LARGE, "BFLOAT8_B-SHARDED", 16, tmp_path, passes=1, batches=2, trace=True, mesh=(1, 2))
    opened = calls_of(standin, "open_mesh_device")[0]
    assert opened["args"][0] == {"ttnn": "MeshShape", "args": [1, 2], "kwargs": {}}
    assert ops.plan.batch == 8 and start.shape == (16, 384)  # planned per chip, answered for the whole batch
    assert ops.card.name == "n300"
    weights = [c for c in calls_of(standin, "from_torch") if "prepare" in c["where"]]
    assert weights and all(c["kwargs"].get("mesh_mapper") is None for c in weights)
    inputs = [c for c in calls_of(standin, "from_torch") if "prepare" not in c["where"]]
    splits = calls_of(standin, "shard_tensor_to_mesh_mapper")
    assert splits and all(c["kwargs"] == {"dim": 0} for c in splits)
    assert inputs and all(c["kwargs"]["mesh_mapper"]["ttnn"] == "shard_tensor_to_mesh_mapper"
                          and c["kwargs"]["mesh_mapper"]["kwargs"] == {"dim": 0} for c in inputs)
    reads = calls_of(standin, "to_torch")
    assert len(reads) == 2 and all(c["kwargs"]["mesh_composer"]["ttnn"] == "concat_mesh_to_tensor_composer" for c in reads)
    recorded = json.dumps(standin.calls)
    assert not any(old in recorded for old in ("ReplicateTensorToMesh", "ShardTensorToMesh", "ConcatMeshToTensor"))
    assert calls_of(standin, "dump_tensor") and not calls_of(standin, "load_tensor")
    again = StandinTtnn(chips=2)
    record_forward(again, LARGE, "BFLOAT8_B-SHARDED", 16, tmp_path, passes=1, trace=True, mesh=(1, 2))
    assert calls_of(again, "load_tensor") and not calls_of(again, "dump_tensor")
    assert not [c for c in calls_of(again, "from_torch") if "prepare" in c["where"]]  # not converted again


def test_mesh_refusals_are_one_line(tmp_path):
    with pytest.raises(UserError, match="needs 8 chips; ttnn finds 2"):
        record_forward(StandinTtnn(chips=2), model_shape("tiny"), "BFLOAT8_B-L1", 8, tmp_path, passes=1, mesh=(2, 4))
    with pytest.raises(UserError, match="must be a multiple of its 2 chips"):
        record_forward(StandinTtnn(chips=2), model_shape("tiny"), "BFLOAT8_B-L1", 7, tmp_path, passes=1, mesh=(1, 2))


def test_perf_trace_and_mesh_through_the_cli(capsys):
    """`bertl11 perf --device tt --trace` captures once and executes each run; `--mesh 1x2` opens both chips."""
    from bertl11.cli import main

    standin = StandinTtnn(chips=2)
    with recording(standin):
        assert main(["perf", "--device", "tt", "--trace", "--mesh", "1x2", "--model", "tiny", "--config", "BFLOAT8_B-L1",
                     "--batch", "16", "--iterations", "3"]) == 0
    out = capsys.readouterr().out
    assert "on 2 x Wormhole n300 (per chip), traced" in out
    functions = standin.functions()
    assert functions.count("begin_trace_capture") == 1 and functions.count("execute_trace") == 4  # first run + 3 cached
    assert functions.count("event_synchronize") == 4
    assert calls_of(standin, "open_mesh_device")[0]["args"][0]["args"] == [1, 2]


def test_tt_options_elsewhere_are_refused_in_one_line(capsys):
    from bertl11.cli import main

    assert main(["perf", "--device", "cpu", "--trace"]) == 2
    assert main(["squad", "--mesh", "1x2", "--limit", "1"]) == 2
    assert main(["demo", "--device", "tt", "--mesh", "two"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and "--trace applies to --device tt" in errors[0] and "--mesh applies" in errors[1]
    assert "rows x columns" in errors[2]


def test_the_sharded_layernorm_gets_its_residual_in_its_inputs_memory_config(tmp_path):
    """layernorm_device_operation.cpp: a sharded input's residual must have the same memory config. The linears write
    the shard spec the plan gives the layer input, so no copy is needed; an op that placed its output otherwise gets
    its output copied into the input's memory config, and the copy freed."""
    standin = StandinTtnn()
    record_forward(standin, LARGE, "BFLOAT8_B-SHARDED", 8, tmp_path / "plan", passes=1)
    norms = [c for c in calls_of(standin, "layer_norm") if "_add_layernorm" in c["where"]]
    assert len(norms) == 2 * LARGE.num_layers
    assert all(c["args"][0]["tensor"]["memory_config"] == c["kwargs"]["residual_input_tensor"]["tensor"]["memory_config"] for c in norms)
    assert norms[0]["args"][0]["tensor"]["memory_config"]["args"][2]["ttnn"] == "ShardSpec"  # the whole spec, from the plan
    assert not [c for c in calls_of(standin, "to_memory_config") if "_add_layernorm" in c["where"]]

    class OwnShardSpecs(StandinTtnn):  # linears that derive their output's shard spec themselves
        def _op_linear(self, x, w, dtype=None, memory_config=None, **kwargs):
            derived = Sym(self, "MemoryConfig", [self._name("TensorMemoryLayout.BLOCK_SHARDED"), self._name("BufferType.L1")], {})
            return super()._op_linear(x, w, dtype=dtype, memory_config=derived)

    other = OwnShardSpecs()
    record_forward(other, LARGE, "BFLOAT8_B-SHARDED", 8, tmp_path / "derived", passes=1)
    copies = [c for c in calls_of(other, "to_memory_config") if "_add_layernorm" in c["where"]]
    assert len(copies) == 2 * LARGE.num_layers
    norms = [c for c in calls_of(other, "layer_norm") if "_add_layernorm" in c["where"]]
    assert all(c["args"][0]["tensor"]["memory_config"] == c["kwargs"]["residual_input_tensor"]["tensor"]["memory_config"] for c in norms)
    assert not other.leaked()


@pytest.mark.parametrize("config, typecasts", [("BFLOAT16-DRAM", 0), ("BFLOAT16-L1", 0), ("MIXED_PRECISION_BATCH8", 0),
                                               ("BFLOAT8_B-DRAM", 1), ("BFLOAT8_B-L1", 1)])
def test_the_embeddings_copy_only_to_change_the_dtype(config, typecasts, tmp_path):
    """Interleaved configs: a bfloat16 layer input is written where the plan places it by the embeddings' layernorm
    itself (a bfloat16 -> bfloat16 typecast would be a full device copy); only BFLOAT8_B takes the typecast."""
    standin = StandinTtnn()
    ops, _ = record_forward(standin, LARGE, config, 8, tmp_path, passes=1)
    embeddings = [c for c in standin.calls if " embeddings " in c["where"]]
    casts = [c for c in embeddings if c["function"] == "typecast"]
    assert len(casts) == typecasts
    norm = next(c for c in embeddings if c["function"] == "layer_norm")
    placed = {"DRAM": {"ttnn": "DRAM_MEMORY_CONFIG"}, "L1": {"ttnn": "L1_MEMORY_CONFIG"}}[ops.plan.placement("input").buffer]
    assert norm["kwargs"]["memory_config"] == (placed if not typecasts else {"ttnn": "L1_MEMORY_CONFIG"})
    assert casts == [] or casts[0]["kwargs"]["memory_config"] == placed


def test_math_fidelity_reaches_every_matmul_and_nothing_else(tmp_path):
    """--math-fidelity sets the fidelity of each linear's and matmul's compute kernel config; the softmax's and the
    layernorms' stay as the run config gives them."""
    fidelities = {}
    for override in (None, "HiFi3"):
        standin = StandinTtnn()
        record_forward(standin, model_shape("tiny"), "BFLOAT8_B-DRAM", 8, tmp_path / str(override), passes=1, math_fidelity=override)
        for call in standin.calls:
            if "compute_kernel_config" in call["kwargs"]:
                fidelity = call["kwargs"]["compute_kernel_config"]["kwargs"]["math_fidelity"]["ttnn"]
                fidelities.setdefault((override, call["function"]), set()).add(fidelity)
    assert fidelities[("HiFi3", "linear")] == fidelities[("HiFi3", "matmul")] == {"MathFidelity.HiFi3"}
    assert fidelities[(None, "linear")] | fidelities[(None, "matmul")] != {"MathFidelity.HiFi3"}
    for function in ("layer_norm", "scale_mask_softmax_in_place"):
        assert fidelities[("HiFi3", function)] == fidelities[(None, function)]
