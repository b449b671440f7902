"""A recording stand-in for ttnn: the backend runs a whole forward against it, and every call is written down.

`StandinTtnn` takes the place of the `ttnn` module (`recording`) while `TtnnOps` opens a device, prepares the
weights and runs `model.bert_qa`. Each call it receives is recorded as plain data: the function, its positional
and keyword arguments, every tensor as its spec (shape, dtype, layout, memory config, on the device or not),
ttnn objects as the expression that built them (`{"ttnn": "CoreCoord", "args": [8, 8]}`) and the backend line
and model line it came from. The weight path is recorded as well: from_torch, the .tensorbin dump (the
backend's own atomic-write code runs; the file holds the tensor's spec), load_tensor.

The stand-in computes only what the backend reads back (output shapes, the device grid); it accepts anything.
Judging the calls is the replay's work (`ttnn_replay.py`, against the real ttnn). The same recording proves
the call sequence of `--trace` and `--mesh` (test_standin.py).
"""

from __future__ import annotations

import json
import sys
import traceback
import types
from contextlib import contextmanager
from pathlib import Path

import torch

TILE = 32
BACKEND_DIRECTORY = str(Path("bertl11") / "backends" / "ttnn") + "/"
MODEL_FILE = str(Path("bertl11") / "model.py")
# ttnn functions that read or write a file: the recording keeps the file name (the replay's directory differs).
FILE_FUNCTIONS = ("dump_tensor", "load_tensor")


def _where() -> str:
    """'bertl11/backends/ttnn/weights.py:123 _convert < prepare (model.py:45 attention)': the backend line that made
    the call, the backend methods it was made for, and the model line above them."""
    backend, model = [], None
    for frame in traceback.extract_stack():
        if BACKEND_DIRECTORY in frame.filename.replace("\\", "/"):
            backend.append(frame)
        elif frame.filename.endswith(MODEL_FILE):
            model = frame
    if not backend:
        return "?"
    inner = backend[-1]
    callers = [f.name for f in reversed(backend[:-1]) if f.name not in (inner.name, "<genexpr>", "<lambda>")]
    module = inner.filename.replace("\\", "/").rpartition(BACKEND_DIRECTORY)[2]
    text = " < ".join([f"{BACKEND_DIRECTORY}{module}:{inner.lineno} {inner.name}", *dict.fromkeys(callers)])
    return text + (f" (model.py:{model.lineno} {model.name})" if model else "")


class Sym:
    """A ttnn name (`ttnn.TILE_LAYOUT`, `ttnn.TensorMemoryLayout.BLOCK_SHARDED`) or an object built from one."""

    def __init__(self, standin, path: str, args=None, kwargs=None):
        self._standin, self._path, self._args, self._kwargs = standin, path, args, kwargs

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        if self._args is not None:  # a field of a constructed object, e.g. CoreCoord(8, 8).x
            names = {"x": 0, "y": 1}
            if attr in names and len(self._args) == 2:
                return self._args[names[attr]]
            return self._kwargs[attr]
        return self._standin._name(f"{self._path}.{attr}")

    def __call__(self, *args, **kwargs):
        return self._standin._call(self._path, args, kwargs)

    def encode(self):
        if self._args is None:
            return {"ttnn": self._path}
        return {"ttnn": self._path, "args": [encode(a) for a in self._args], "kwargs": {k: encode(v) for k, v in self._kwargs.items()}}

    def __eq__(self, other):
        return isinstance(other, Sym) and self.encode() == other.encode()

    def __hash__(self):
        return hash(json.dumps(self.encode(), sort_keys=True))

    def __repr__(self):
        return f"ttnn.{self._path}" if self._args is None else f"ttnn.{self._path}(...)"


class StandinDevice:
    """What ttnn.open_device / open_mesh_device return: the grid and the calls made on the device object."""

    def __init__(self, standin, grid, chips=1):
        self._standin, self.grid, self.chips = standin, grid, chips

    def compute_with_storage_grid_size(self):
        return Sym(self._standin, "CoreCoord", list(self.grid), {})

    def enable_program_cache(self):
        self._standin._record("MeshDevice.enable_program_cache", (), {})

    def get_num_devices(self):
        return self.chips

    def encode(self):
        return {"device": self.chips}


class StandinTensor:
    """A tensor as its spec. `shape` is the logical shape; tile layout pads the last two dims to whole tiles."""

    def __init__(self, standin, shape, dtype, layout, memory_config=None, on_device=False, buffer=None):
        self._standin = standin
        self.shape = tuple(int(d) for d in shape)
        self.dtype, self.layout, self.memory, self.on_device = dtype, layout, memory_config, on_device
        # The device buffer, shared by views (reshape) and in-place results; deallocating any of them frees it.
        self.buffer = buffer if buffer is not None else {"freed": False, "where": ""}

    @property
    def padded_shape(self):
        if self.layout is not None and self.layout._path == "TILE_LAYOUT" and len(self.shape) >= 2:
            *lead, h, w = self.shape
            return tuple(lead) + (-(-h // TILE) * TILE, -(-w // TILE) * TILE)
        return self.shape

    @property
    def deallocated(self) -> bool:
        return self.buffer["freed"]

    def memory_config(self):
        return self.memory

    def deallocate(self):
        self._standin._record("Tensor.deallocate", (self,), {})
        self.buffer["freed"] = True

    def spec(self):
        return {"shape": list(self.shape), "dtype": encode(self.dtype), "layout": encode(self.layout),
                "memory_config": encode(self.memory), "on_device": self.on_device}

    def encode(self):
        return {"tensor": self.spec()}


def encode(value):
    if isinstance(value, (Sym, StandinTensor, StandinDevice)):
        return value.encode()
    if isinstance(value, torch.Tensor):
        return {"torch": {"shape": list(value.shape), "dtype": str(value.dtype).removeprefix("torch.")}}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"the stand-in cannot record a {type(value).__name__}")


class StandinTtnn(types.ModuleType):
    """The `ttnn` module, recording. `arch` and `grid` are what the opened chip reports; `chips` how many
    devices ttnn finds (a mesh opens as many)."""

    def __init__(self, arch="wormhole_b0", grid=(8, 8), chips=1, cluster=None):
        super().__init__("ttnn")
        self._arch, self._grid, self._chips = arch, tuple(grid), chips
        # ttnn's cluster type (ttnn.cluster.get_cluster_type): an n150, an n300 for two chips, a p150
        self._cluster = cluster or ("P150" if arch == "blackhole" else "N300" if chips == 2 else "N150")
        self.calls: list[dict] = []
        self.tensors: list[StandinTensor] = []  # every tensor a call returned, in order
        self.transformer = self._name("transformer")
        self.experimental = self._name("experimental")

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return self._name(name)

    # --------------------------------------------------------------------------------------- recording

    def _name(self, path: str) -> Sym:
        return Sym(self, path)

    def _record(self, function, args, kwargs, result=None):
        arguments = [encode(a) for a in args]
        if function in FILE_FUNCTIONS:
            arguments[0] = Path(arguments[0]).name
        entry = {"function": function, "args": arguments, "kwargs": {k: encode(v) for k, v in kwargs.items()}, "where": _where()}
        if isinstance(result, StandinTensor):
            entry["result"] = result.spec()
        self.calls.append(entry)

    def _call(self, path, args, kwargs):
        handler = getattr(self, "_op_" + path.replace(".", "__"), None)
        if handler is None:  # a constructor: CoreCoord, MemoryConfig, program configs, compute kernel configs
            return Sym(self, path, list(args), dict(kwargs))
        result = handler(*args, **kwargs)
        outputs = result if isinstance(result, tuple) else (result,)
        self._record(path, args, kwargs, result if isinstance(result, StandinTensor) else None)
        for t in outputs:
            if isinstance(t, StandinTensor) and not t.buffer["where"]:
                t.buffer["where"] = self.calls[-1]["where"]
                self.tensors.append(t)
        return result

    def leaked(self, kept=("prepare", "_position_ids")) -> list[StandinTensor]:
        """Device tensors still allocated that were not made to stay (weights, position ids): what a forward
        leaves behind on the card."""
        return [t for t in self.tensors if t.on_device and not t.deallocated and not any(k in t.buffer["where"] for k in kept)]

    def _tensor(self, like, shape=None, dtype=None, memory_config=None, layout=None):
        return StandinTensor(self, like.shape if shape is None else shape, dtype or like.dtype, layout or like.layout,
                             memory_config if memory_config is not None else like.memory, like.on_device)

    def functions(self) -> list[str]:
        return [c["function"] for c in self.calls]

    # --------------------------------------------------------------------------------------- devices

    def _op_GetNumAvailableDevices(self):
        return self._chips

    def _op_get_arch_name(self):
        return self._arch

    def _op_cluster__get_cluster_type(self):
        return types.SimpleNamespace(name=self._cluster)

    def _op_open_mesh_device(self, mesh_shape, **kwargs):
        rows, cols = mesh_shape._args
        return StandinDevice(self, self._grid, rows * cols)

    def _op_close_mesh_device(self, device):
        return None

    def _op_synchronize_device(self, device, **kwargs):
        return None

    # --------------------------------------------------------------------------------------- traces and events

    def _op_begin_trace_capture(self, device, cq_id=0):
        return Sym(self, "MeshTraceId", [len(self.calls)], {})

    def _op_end_trace_capture(self, device, trace_id, cq_id=0):
        return None

    def _op_execute_trace(self, device, trace_id, cq_id=0, blocking=True):
        return None

    def _op_release_trace(self, device, trace_id):
        return None

    def _op_record_event(self, device, cq_id, **kwargs):
        return Sym(self, "MeshEvent", [cq_id, len(self.calls)], {})  # which queue, and which call recorded it

    def _op_wait_for_event(self, cq_id, event):
        return None

    def _op_event_synchronize(self, event):
        return None

    # --------------------------------------------------------------------------------------- meshes

    def _op_shard_tensor_to_mesh_mapper(self, device, dim):
        return Sym(self, "shard_tensor_to_mesh_mapper", [device], {"dim": dim})

    def _op_concat_mesh_to_tensor_composer(self, device, dim):
        return Sym(self, "concat_mesh_to_tensor_composer", [device], {"dim": dim})

    # --------------------------------------------------------------------------------------- tensors and files

    def _op_from_torch(self, tensor, dtype=None, *, layout=None, device=None, memory_config=None, mesh_mapper=None, **kwargs):
        shape = list(tensor.shape)  # per chip, as a mesh tensor's shape is
        if mesh_mapper is not None and mesh_mapper._path == "shard_tensor_to_mesh_mapper":
            shape[mesh_mapper._kwargs["dim"]] //= mesh_mapper._args[0].chips
        return StandinTensor(self, shape, dtype, layout, memory_config, device is not None)

    def _op_to_device(self, tensor, device, memory_config=None, **kwargs):
        return StandinTensor(self, tensor.shape, tensor.dtype, tensor.layout, memory_config, True)

    def _op_copy_host_to_device_tensor(self, host, device_tensor, cq_id=0):
        return None

    def _op_to_memory_config(self, x, memory_config, dtype=None, output_tensor=None):
        if output_tensor is not None:  # written into it
            return output_tensor
        return self._tensor(x, dtype=dtype, memory_config=memory_config)

    def _op_deallocate(self, t, force=True):
        t.buffer["freed"] = True

    def _op_to_torch(self, tensor, mesh_composer=None, **kwargs):
        shape = list(tensor.shape)
        if mesh_composer is not None:
            shape[mesh_composer._kwargs["dim"]] *= mesh_composer._args[0].chips
        return torch.zeros(shape)

    def _op_from_device(self, tensor, blocking=True, **kwargs):
        return StandinTensor(self, tensor.shape, tensor.dtype, tensor.layout, None, False)

    def _op_dump_tensor(self, file_name, tensor, **kwargs):
        Path(file_name).write_text(json.dumps(tensor.spec()))

    def _op_load_tensor(self, file_name, **kwargs):
        spec = json.loads(Path(file_name).read_text())
        return StandinTensor(self, spec["shape"], self._decode(spec["dtype"]), self._decode(spec["layout"]), None, False)

    def _decode(self, value):
        return None if value is None else Sym(self, value["ttnn"])

    # --------------------------------------------------------------------------------------- ops

    def _op_embedding(self, ids, weight, **kwargs):
        return StandinTensor(self, (*ids.shape, weight.shape[-1]), kwargs.get("dtype", weight.dtype), kwargs.get("layout"),
                             kwargs.get("memory_config"), True)

    def _op_add(self, a, b, memory_config=None, **kwargs):
        return self._tensor(a, torch.broadcast_shapes(a.shape, b.shape), memory_config=memory_config)

    def _op_layer_norm(self, x, memory_config=None, program_config=None, **kwargs):
        if program_config is not None and program_config._kwargs.get("inplace"):  # writes over its input
            return StandinTensor(self, x.shape, x.dtype, x.layout, x.memory, x.on_device, x.buffer)
        return self._tensor(x, memory_config=memory_config)

    def _op_reshape(self, x, shape, **kwargs):  # a view: the same buffer
        return StandinTensor(self, shape, x.dtype, x.layout, x.memory, x.on_device, x.buffer)

    def _op_typecast(self, x, dtype, memory_config=None, **kwargs):
        return self._tensor(x, dtype=dtype, memory_config=memory_config)

    def _op_interleaved_to_sharded(self, x, memory_config, dtype=None, **kwargs):
        return self._tensor(x, dtype=dtype, memory_config=memory_config)

    def _op_sharded_to_interleaved(self, x, memory_config, dtype=None, **kwargs):
        return self._tensor(x, dtype=dtype, memory_config=memory_config)

    def _op_linear(self, x, w, dtype=None, memory_config=None, **kwargs):
        return self._tensor(x, (*x.shape[:-1], w.shape[-1]), dtype=dtype, memory_config=memory_config)

    def _op_matmul(self, a, b, dtype=None, memory_config=None, **kwargs):
        return self._tensor(a, (*a.shape[:-1], b.shape[-1]), dtype=dtype, memory_config=memory_config)

    def _split(self, qkv, num_heads, memory_config):
        batch, seq, width = qkv.shape[0], qkv.shape[-2], qkv.shape[-1]
        head = width // 3 // num_heads
        q = self._tensor(qkv, (batch, num_heads, seq, head), memory_config=memory_config)
        return q, self._tensor(qkv, (batch, num_heads, head, seq), memory_config=memory_config), self._tensor(q)

    def _op_transformer__split_query_key_value_and_split_heads(self, qkv, num_heads=16, memory_config=None, **kwargs):
        return self._split(qkv, num_heads, memory_config)

    def _op_experimental__split_query_key_value_and_split_heads(self, qkv, compute_with_storage_grid_size=None, memory_config=None,
                                                                num_heads=16, **kwargs):
        return self._split(qkv, num_heads, memory_config)

    def _op_scale_mask_softmax_in_place(self, x, scale=None, mask=None, **kwargs):
        return x

    def _op_experimental__nlp_concat_heads(self, x, memory_config=None, **kwargs):
        batch, heads, seq, head = x.shape
        return self._tensor(x, (batch, 1, seq, heads * head), memory_config=memory_config)


@contextmanager
def recording(standin: StandinTtnn):
    """`import ttnn` finds the stand-in inside the block."""
    saved = sys.modules.get("ttnn")
    sys.modules["ttnn"] = standin
    try:
        yield standin
    finally:
        if saved is None:
            sys.modules.pop("ttnn", None)
        else:
            sys.modules["ttnn"] = saved


def bert_parameters(shape) -> dict[str, torch.Tensor]:
    """The model-layout parameters of a BERT of this shape, as meta tensors (shapes without storage), through
    the real state-dict import (`weights.import_state_dict`)."""
    from bertl11.weights import EMBEDDINGS, LAYERNORMS, LINEARS, QKV, import_state_dict

    h, f = shape.hidden_size, shape.intermediate_size
    meta = {"device": "meta"}
    rows = {"word_embeddings": shape.vocab_size, "position_embeddings": shape.max_position_embeddings,
            "token_type_embeddings": shape.type_vocab_size}
    state = {f"bert.embeddings.{name}.weight": torch.empty(rows[name], h, **meta) for name in EMBEDDINGS}
    state.update({f"bert.embeddings.LayerNorm.{p}": torch.empty(h, **meta) for p in ("weight", "bias")})
    linear_shapes = {"attention.output.dense": (h, h), "intermediate.dense": (f, h), "output.dense": (h, f)}
    for i in range(shape.num_layers):
        layer = f"bert.encoder.layer.{i}"
        for n in QKV:
            state[f"{layer}.attention.self.{n}.weight"] = torch.empty(h, h, **meta)
            state[f"{layer}.attention.self.{n}.bias"] = torch.empty(h, **meta)
        for linear in LINEARS:
            out, inp = linear_shapes[linear]
            state[f"{layer}.{linear}.weight"] = torch.empty(out, inp, **meta)
            state[f"{layer}.{linear}.bias"] = torch.empty(out, **meta)
        for norm in LAYERNORMS:
            state.update({f"{layer}.{norm}.{p}": torch.empty(h, **meta) for p in ("weight", "bias")})
    state["qa_outputs.weight"] = torch.empty(2, h, **meta)
    state["qa_outputs.bias"] = torch.empty(2, **meta)
    return import_state_dict(state, shape)


# The models the replay covers: BERT-large (the seed's), MiniLM's (head size 32) and the tiny model's shape.
def model_shape(name: str):
    from bertl11.config import BertShape

    sizes = {"large": (1024, 24, 16, 4096), "minilm": (384, 6, 12, 1536), "tiny": (128, 2, 2, 512)}[name]
    hidden, layers, heads, intermediate = sizes
    return BertShape(vocab_size=30522, hidden_size=hidden, num_layers=layers, num_heads=heads, intermediate_size=intermediate,
                     max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12, hidden_act="gelu")


def record_forward(standin: StandinTtnn, shape, config: str, batch: int, cache: Path, seq: int = 384, passes: int = 2,
                   backend=None, batches: int = 1, trace: bool = False, mesh=(1, 1), math_fidelity: str | None = None):
    """Open the stand-in card, prepare the weights `passes` times (the first converts and dumps, the next load
    the .tensorbin cache) and run `batches` batches of `batch` sequences, as `QAModel.stream` does (`ops.forward_stream`),
    with every matmul at `math_fidelity` if given (--math-fidelity).
    `backend`: a module standing for bertl11.backends.ttnn (the planted-bug test passes an edited copy).
    Returns the (closed) backend and the logits of the last batch."""
    from bertl11.backends import ttnn as default_backend
    from bertl11.config import get_run_config
    from bertl11.model import bert_qa

    flat = bert_parameters(shape)
    with recording(standin):
        ops = (backend or default_backend).TtnnOps(shape, get_run_config(config, math_fidelity), weight_cache=cache,
                                                   source_manifest=None, trace=trace, mesh=mesh)
        try:
            for _ in range(passes):
                params = ops.prepare(flat)
            ids = torch.randint(1000, shape.vocab_size, (batch, seq))
            types_ = (torch.arange(seq) >= seq // 4).long().expand(batch, -1)
            inputs = [(ids, types_, torch.ones(batch, seq, dtype=torch.long))] * batches
            *_, logits = ops.forward_stream(bert_qa, params, inputs, shape)
        finally:
            ops.close()
    return ops, logits


def call_key(call: dict) -> str:
    """Calls that differ only in where they came from, or in which weight file they name (all but its
    extension), are one call to replay."""
    args = call["args"]
    if call["function"] in FILE_FUNCTIONS:
        args = [Path(args[0]).suffix, *args[1:]]
    return json.dumps([call["function"], args, call["kwargs"], call.get("result")], sort_keys=True)


def distinct_calls(calls: list[dict]) -> list[dict]:
    seen = {}
    for call in calls:
        seen.setdefault(call_key(call), call)
    return list(seen.values())
