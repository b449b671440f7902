"""The ttnn backend: the op interface on a Tenstorrent card (Wormhole n150/n300, Blackhole p150) with ttnn 0.81.

Every op runs with the program config and memory config the sharding plan (`bertl11.plan`) derives for the
card's grid, the batch and the run config; BFLOAT8_B-SHARDED keeps activations block-sharded in L1 exactly as
the seed's metal_BERT_large_11 does. Names follow ttnn 0.81 (tenstorrent/tt-metal ttnn/cpp/ttnn/operations/**
/*_nanobind.cpp); the contract tier (tests/contract) checks every `ttnn.` name and keyword used here against
the real package. `ttnn` is imported only when a device is opened, so this module imports without it.

Weights: the model-layout tensors from the verified safetensors cache are converted once per card and
stored beside it with ttnn.dump_tensor (`cache.ttnn_cache_directory`/<arch>/*.tensorbin), a verified directory
(`verified.py`: a manifest of sizes and sha256 and of what they were made from, written last; written whole, by
one process at a time); later loads verify it and use ttnn.load_tensor, and a stale one is rebuilt with the
reason reported (`cache_detail`). The program
cache is on (ttnn's default; enabled explicitly for older builds), so the first batch compiles every kernel
and later batches reuse them.

Memory: ops never free their inputs; the model calls `release` after a tensor's last use (`model.py`); what the
backend allocates inside an op (lookups, copies, a residual an interleaved layernorm does not overwrite) it frees itself.

The chips open as one mesh device with a trace region and two command queues. `forward` runs the model op by op, or,
traced, captures it once per input shape and replays it (`execute_trace`) while queue 1 uploads the inputs; on a mesh
of chips the batch is split across them and the weights replicated (docs/tenstorrent.md).
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import torch

from ..cards import COL_MAJOR, Card, card_for_arch
from ..config import BertShape, RunConfig
from ..errors import UserError
from ..ops import OPS, Backend
from ..plan import (
    BLOCK_SHARDED, INTERLEAVED, MULTICAST, EncoderShape, LayerNormProgram, MatmulProgram, Plan,
    SoftmaxProgram, interleave_qkv, make_plan,
)
from ..verified import Staging, VerifiedDirectory, sha256_file
from ..weights import parameter_tree, tensor_kind
from .torch import MASK_VALUE
from .ttnn_program_configs import build_program_config

# ttnn.dump_tensor and load_tensor take only files with this extension (ttnn/operations/core.py).
TENSORBIN = ".tensorbin"
# Why a .tensorbin cache whose header differs is stale, in one line: (found, expected) -> reason.
TENSORBIN_REASONS = {
    "ttnn": lambda found, expected: f"written by ttnn {found}, this is ttnn {expected}",
    "config": lambda found, expected: f"converted for config {found}, not {expected}",
    "qkv_groups": lambda found, expected: f"QKV interleaved in {found} groups, this card's plan needs {expected}",
    "source": lambda found, expected: "the safetensors cache it was converted from changed",
}
# The seed runs layernorm at HiFi4 and the matmuls at ttnn's defaults (tt/bert_encoder.py).
LAYERNORM_FIDELITY = "HiFi4"


def tensorbin_name(name: str, dtype: str) -> str:
    return f"{name}_{dtype.upper()}{TENSORBIN}"


def import_ttnn():
    try:
        import ttnn
    except ImportError as error:
        raise UserError(
            f"--device tt needs the ttnn package (pip install 'bertl11[tt]' on Python 3.10 or 3.12): {error}"
        ) from None
    return ttnn


def ttnn_version() -> str:
    """The installed ttnn's version, from its package metadata: ttnn 0.81 has no `__version__`, and the
    .tensorbin cache must go stale when ttnn changes. A source build without metadata reads "unknown"."""
    try:
        return importlib.metadata.version("ttnn")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def program_config_spec(program) -> tuple[str, dict]:
    """A plan's program config as (ttnn class name, keyword arguments) in plain data. The backend builds its
    configs from this, and the contract tier constructs the same specs with the real ttnn classes."""
    if program is None:
        return ("", {})
    grid = {"CoreCoord": list(program.grid)}
    if isinstance(program, MatmulProgram):
        kwargs = {
            "compute_with_storage_grid_size": grid, "in0_block_w": program.in0_block_w,
            "out_subblock_h": program.out_subblock_h, "out_subblock_w": program.out_subblock_w,
            "per_core_M": program.per_core_M, "per_core_N": program.per_core_N,
        }
        if program.kind == MULTICAST:
            # The seed fuses GELU in its fast approximate form: (UnaryOpType.GELU, True).
            activation = {"UnaryWithParam": ["GELU", 1.0]} if program.fused_activation == "gelu" else None
            kwargs.update(transpose_mcast=program.transpose_mcast, fused_activation=activation)
            return ("MatmulMultiCoreReuseMultiCastProgramConfig", kwargs)
        return ("MatmulMultiCoreReuseProgramConfig", kwargs)
    common = {"compute_with_storage_grid_size": grid, "subblock_w": program.subblock_w, "block_h": program.block_h, "block_w": program.block_w}
    if isinstance(program, SoftmaxProgram):
        return ("SoftmaxShardedMultiCoreProgramConfig", common)
    if isinstance(program, LayerNormProgram):
        return ("LayerNormShardedMultiCoreProgramConfig", {**common, "inplace": program.inplace})
    raise TypeError(f"no ttnn program config for {program!r}")


# Device memory set aside for the captured trace. tt-metal's sentence_bert demo (BERT-base, 12 layers, batch 8)
# reserves 23,887,872 B; BERT-large has twice the layers and the seed's batch 8-12, so twice that, rounded up.
TRACE_REGION_BYTES = 48 * 2**20
# Command queues: 0 runs the model, 1 uploads the next inputs (tt-metal's 2-CQ pipelining).
MODEL_QUEUE, UPLOAD_QUEUE = 0, 1
SINGLE_CHIP = (1, 1)


def open_tt_device(ttnn, mesh: tuple[int, int] = SINGLE_CHIP) -> tuple[object, Card]:
    """Open the chips of `mesh` (rows x columns; one chip by default) as one mesh device with a trace region
    and two command queues, or say in one line why not (no card, too few chips, a Grayskull, a driver error).
    The card entry is per chip: every chip runs the same plan on its share of the batch."""
    try:
        found = ttnn.GetNumAvailableDevices()
    except RuntimeError as error:
        found, reason = 0, str(error)
    else:
        reason = ""
    if not found:
        detail = "no chips detected" if "No chips detected" in reason or not reason else reason.splitlines()[0]
        raise UserError(f"--device tt: no Tenstorrent card found ({detail}); use --device cpu or cuda")
    chips = mesh[0] * mesh[1]
    if chips > found:
        raise UserError(f"--mesh {mesh[0]}x{mesh[1]} needs {chips} chips; ttnn finds {found}")
    arch = ttnn.get_arch_name().lower()
    if arch == "grayskull":
        raise UserError(
            "--device tt: this card is a Grayskull, which current ttnn no longer runs (last supported in tt-metal v0.55); "
            "`bertl11 plan --card e150` and the grid emulator still cover it"
        )
    try:
        mesh_device = ttnn.open_mesh_device(ttnn.MeshShape(*mesh), trace_region_size=TRACE_REGION_BYTES, num_command_queues=2)
    except RuntimeError as error:
        raise UserError(f"--device tt: ttnn could not open {chips} chip(s): {str(error).splitlines()[0]}") from None
    enable = getattr(mesh_device, "enable_program_cache", None)
    if enable is not None:  # on by default in current ttnn; older builds need the call
        enable()
    grid = mesh_device.compute_with_storage_grid_size()
    try:
        return mesh_device, card_for_arch(arch, (grid.x, grid.y))
    except UserError:
        ttnn.close_mesh_device(mesh_device)
        raise


@dataclass
class Trace:
    """A forward captured for one input shape: its id, the device input buffers it reads and the logits it writes."""

    key: tuple[int, int]
    id: object
    inputs: tuple
    logits: object


class TtnnOps(Backend):
    """`Backend` on a Tenstorrent card. Activations are ttnn tensors [B, 1, S, H] in tile layout.

    mesh: (rows, columns) of chips run data parallel: weights replicated on every chip, the batch split
    along dim 0, the logits joined back; the plan is per chip (global batch = per-chip batch x chips).
    trace: `forward` captures the whole model once per input shape and replays it (execute_trace) on
    command queue 0 while queue 1 uploads the inputs, as tt-metal's performant demos do.
    """

    def __init__(self, shape: BertShape, run_config: RunConfig, weight_cache: Path | None = None, source_manifest: Path | None = None,
                 trace: bool = False, mesh: tuple[int, int] = SINGLE_CHIP):
        """weight_cache: where this backend keeps its .tensorbin files; source_manifest: the safetensors cache's
        manifest they were converted from (its hash goes into ours, so a rebuilt source cache invalidates them)."""
        self.ttnn = import_ttnn()
        self.shape = shape
        self.run_config = run_config
        self.weight_cache = weight_cache
        self.source_manifest = source_manifest
        self.trace, self.mesh = trace, tuple(mesh)
        self.chips = self.mesh[0] * self.mesh[1]
        self.mesh_device, self.card = open_tt_device(self.ttnn, self.mesh)
        self.torch_device = torch.device("cpu")  # the model hands inputs over on the host; embeddings uploads them
        self.plan: Plan | None = None  # the current batch's (per chip), from begin_batch
        self._positions: dict[tuple[int, int], object] = {}  # position ids stay on the device, per input shape
        self._persistent: set[int] = set()  # device tensors the model must not free: trace inputs, positions
        self._trace: Trace | None = None
        self._capturing = False
        self._captured = None  # the logits a capture run writes
        self._op_event = None  # queue 0 finished reading the inputs: queue 1 may overwrite them

    # ------------------------------------------------------------------ the device

    def begin_batch(self, batch: int, seq: int) -> None:
        """Every op of the batch runs with the plan for its per-chip batch and sequence length. Inside a trace
        capture the model sees the per-chip device inputs; `forward` has set the plan already."""
        if self._capturing:
            return
        if batch % self.chips:
            raise UserError(f"--mesh {self.mesh[0]}x{self.mesh[1]}: the batch ({batch}) must be a multiple of its {self.chips} chips")
        per_chip = batch // self.chips
        if self.plan is None or self.plan.batch != per_chip or self.plan.shape.seq != seq:
            self.plan = self._plan_for(per_chip, seq)

    def synchronize(self) -> None:
        self.ttnn.synchronize_device(self.mesh_device)

    def describe(self) -> str:
        chips = f"{self.chips} x " if self.chips > 1 else ""
        return f"{self.run_config.name} on {chips}{self.card.title}" + (", traced" if self.trace else "")

    def release(self, t) -> None:
        if id(t) not in self._persistent:
            t.deallocate()

    def close(self) -> None:
        if self._trace is not None:
            self.ttnn.release_trace(self.mesh_device, self._trace.id)
        self.ttnn.close_mesh_device(self.mesh_device)

    # ------------------------------------------------------------------ host <-> device

    def _mapper(self, replicate: bool = False):
        """How a host tensor spreads over the mesh: weights replicated, inputs split along the batch."""
        if self.chips == 1:
            return None
        ttnn = self.ttnn
        return ttnn.ReplicateTensorToMesh(self.mesh_device) if replicate else ttnn.ShardTensorToMesh(self.mesh_device, dim=0)

    def _token_ids(self, t, device=None):
        """[B, S] token ids (or types) as a uint32 tensor, split over the mesh; in L1 of `device` if given."""
        ttnn = self.ttnn
        memory = ttnn.L1_MEMORY_CONFIG if device is not None else None
        return ttnn.from_torch(t.to(torch.int32).contiguous(), dtype=ttnn.uint32, layout=ttnn.ROW_MAJOR_LAYOUT, device=device,
                               memory_config=memory, mesh_mapper=self._mapper())

    def _additive_mask(self, attention_mask, device=None):
        """The 1/0 padding mask as the additive mask the softmax reads, in the plan's mask shape; in L1 of
        `device` if given. The sharded softmax reads it row-major, 32 keys per row (as the seed)."""
        ttnn = self.ttnn
        additive = ((1.0 - attention_mask.float()) * MASK_VALUE).reshape(attention_mask.shape[0], *self.plan.mask_shape[1:])
        dtype, layout = (ttnn.bfloat16, ttnn.ROW_MAJOR_LAYOUT) if self.plan.sharded else (self._dtype("attention_mask"), ttnn.TILE_LAYOUT)
        memory = ttnn.L1_MEMORY_CONFIG if device is not None else None
        return ttnn.from_torch(additive, dtype=dtype, layout=layout, device=device, memory_config=memory, mesh_mapper=self._mapper())

    def _host_inputs(self, input_ids, token_type_ids, attention_mask) -> tuple:
        """Token ids, token types and the additive mask as host tensors, ready for queue 1 to upload."""
        return self._token_ids(input_ids), self._token_ids(token_type_ids), self._additive_mask(attention_mask)

    def _upload(self, host, memory_config):
        return self.ttnn.to_device(host, self.mesh_device, memory_config=memory_config)

    def _position_ids(self, batch: int, seq: int):
        """[B, S] position ids, uploaded once per input shape and kept on the device."""
        key = (batch, seq)
        if key not in self._positions:
            positions = torch.arange(seq).expand(batch, seq)
            self._positions[key] = self._token_ids(positions, device=self.mesh_device)
            self._persistent.add(id(self._positions[key]))
        return self._positions[key]

    def _read_logits(self, logits) -> torch.Tensor:
        """The logits on the host, joined over the mesh: a non-blocking read, then the batch's one host sync."""
        ttnn = self.ttnn
        host = ttnn.from_device(logits, blocking=False)
        ttnn.synchronize_device(self.mesh_device)
        composer = ttnn.ConcatMeshToTensor(self.mesh_device, dim=0) if self.chips > 1 else None
        return ttnn.to_torch(host, mesh_composer=composer)

    # ------------------------------------------------------------------ the whole model, traced

    def forward(self, model, params, input_ids, token_type_ids, attention_mask, shape):
        """Start and end logits [B, S] for one batch: untraced, the model op by op; traced, one execute_trace."""
        if not self.trace:
            return super().forward(model, params, input_ids, token_type_ids, attention_mask, shape)
        batch, seq = input_ids.shape
        self.begin_batch(batch, seq)
        hosts = self._host_inputs(input_ids, token_type_ids, attention_mask)
        if self._trace is None or self._trace.key != (batch, seq):
            self._capture(params, hosts, (batch, seq), lambda inputs: model(self, params, *inputs, shape))
        else:
            self._write_inputs(hosts, self._trace.inputs)
        ttnn = self.ttnn
        ttnn.execute_trace(self.mesh_device, self._trace.id, cq_id=MODEL_QUEUE, blocking=False)
        self._op_event = ttnn.record_event(self.mesh_device, MODEL_QUEUE)
        host = self._read_logits(self._trace.logits).float().reshape(batch, seq, -1)
        return host[..., 0], host[..., 1]

    def _write_inputs(self, hosts, buffers) -> None:
        """Upload on queue 1 into the trace's input buffers once queue 0 is done with them; queue 0 waits for it."""
        ttnn = self.ttnn
        if self._op_event is not None:
            ttnn.wait_for_event(UPLOAD_QUEUE, self._op_event)
        for host, buffer in zip(hosts, buffers):
            ttnn.copy_host_to_device_tensor(host, buffer, cq_id=UPLOAD_QUEUE)
        write_event = ttnn.record_event(self.mesh_device, UPLOAD_QUEUE)
        ttnn.wait_for_event(MODEL_QUEUE, write_event)

    def _capture(self, params, hosts, key, run) -> None:
        """Allocate the input buffers, run the model once to compile its kernels, then capture it."""
        ttnn = self.ttnn
        if self._trace is not None:
            ttnn.release_trace(self.mesh_device, self._trace.id)
            for buffer in (*self._trace.inputs, self._trace.logits):
                self._persistent.discard(id(buffer))
                buffer.deallocate()
        inputs = tuple(self._upload(h, ttnn.DRAM_MEMORY_CONFIG if i < 2 else ttnn.L1_MEMORY_CONFIG) for i, h in enumerate(hosts))
        self._persistent.update(id(t) for t in inputs)
        self._capturing = True
        try:
            run(inputs)  # compiles every kernel into the program cache: a trace may not compile
            self._captured.deallocate()
            self._write_inputs(hosts, inputs)
            trace_id = ttnn.begin_trace_capture(self.mesh_device, cq_id=MODEL_QUEUE)
            run(inputs)
            ttnn.end_trace_capture(self.mesh_device, trace_id, cq_id=MODEL_QUEUE)
        finally:
            self._capturing = False
        self._persistent.add(id(self._captured))
        self._trace = Trace(key, trace_id, inputs, self._captured)

    # ------------------------------------------------------------------ placement

    def _plan_for(self, batch: int, seq: int) -> Plan:
        return make_plan(self.card, batch, self.run_config, EncoderShape.from_bert(self.shape, seq))

    def _dtype(self, tensor: str):
        return getattr(self.ttnn, self.run_config.dtype_of(tensor))

    def _output_dtype(self, op: str):
        return self._dtype(OPS[op].output)

    def _memory(self, op: str):
        """The output memory config the plan gives an op (sharded specs are derived by the op itself)."""
        ttnn = self.ttnn
        placement = self.plan.ops[op].output
        if placement.layout == INTERLEAVED:
            return ttnn.DRAM_MEMORY_CONFIG if placement.buffer == "DRAM" else ttnn.L1_MEMORY_CONFIG
        layout = ttnn.TensorMemoryLayout.BLOCK_SHARDED if placement.layout == BLOCK_SHARDED else ttnn.TensorMemoryLayout.HEIGHT_SHARDED
        return ttnn.MemoryConfig(layout, ttnn.BufferType.L1)

    def _program(self, op: str, default: str = ""):
        return build_program_config(self.ttnn, program_config_spec(self.plan.ops[op].program), default)

    def _orientation(self):
        return self.ttnn.ShardOrientation.COL_MAJOR if self.plan.orientation == COL_MAJOR else self.ttnn.ShardOrientation.ROW_MAJOR

    # ------------------------------------------------------------------ weights

    def _groups(self) -> int:
        """QKV interleave groups: the same for every batch on this card (derived at the largest batch)."""
        return self._plan_for(self.card.batch_range[1], EncoderShape().seq).qkv_groups

    def _device_layout(self, name: str, t: torch.Tensor, groups: int):
        """(tensor shaped as ttnn takes it, dtype name, tile layout?) for one model-layout parameter."""
        kind = tensor_kind(name)
        dtype = self.run_config.dtype_of(kind)
        if kind == "embedding_weights":
            return t, dtype, False
        if kind == "layernorm_weights":  # the seed's gamma/beta layout: [1, 1, H/32, 32], row-major
            return t.reshape(1, 1, -1, 32), dtype, False
        if name.endswith("qkv.weight") or name.endswith("qkv.bias"):
            t = interleave_qkv(t, groups)
        return t.reshape(1, 1, -1, t.shape[-1]), dtype, True

    def prepare(self, flat: dict[str, torch.Tensor]):
        """Model-layout tensors -> device tensors in DRAM, via this card's .tensorbin cache when it verifies
        (`tensorbin_cache`), else converted and, on one chip, dumped into a new cache. On a mesh every chip
        gets a replica (ReplicateTensorToMesh), converted from the safetensors cache: the .tensorbin files hold
        single-chip tensors."""
        ttnn = self.ttnn
        groups = self._groups()
        if self.weight_cache is None or self.chips > 1:
            return parameter_tree(self._convert(flat, groups))
        cache = self.tensorbin_cache(groups)
        files = {name: tensorbin_name(name, self.run_config.dtype_of(tensor_kind(name))) for name in flat}

        def load() -> dict:
            cache.verify(required=list(files.values()))
            return {name: self._upload(ttnn.load_tensor(str(cache.path / files[name])), ttnn.DRAM_MEMORY_CONFIG) for name in flat}

        tensors, outcome = cache.load_or_build(load, lambda staging: self._convert(flat, groups, staging))
        self.cache_detail = outcome.detail
        return parameter_tree(tensors)

    def _convert(self, flat: dict[str, torch.Tensor], groups: int, staging: Staging | None = None) -> dict:
        """Model-layout tensors -> device tensors in DRAM, one at a time; on one chip each host tensor is also
        dumped into `staging` (a .tensorbin cache being written) when given."""
        ttnn = self.ttnn
        tensors = {}
        for name, t in flat.items():
            data, dtype, tiled = self._device_layout(name, t.float(), groups)
            layout = ttnn.TILE_LAYOUT if tiled else ttnn.ROW_MAJOR_LAYOUT
            if self.chips > 1:
                tensors[name] = ttnn.from_torch(data, dtype=getattr(ttnn, dtype), layout=layout, device=self.mesh_device,
                                                memory_config=ttnn.DRAM_MEMORY_CONFIG, mesh_mapper=self._mapper(replicate=True))
                continue
            host = ttnn.from_torch(data, dtype=getattr(ttnn, dtype), layout=layout)
            if staging is not None:
                self._dump(host, staging, tensorbin_name(name, dtype))
            tensors[name] = self._upload(host, ttnn.DRAM_MEMORY_CONFIG)
        return tensors

    def _dump(self, host, staging: Staging, file_name: str) -> None:
        # ttnn.dump_tensor refuses a name not ending in .tensorbin: staged files are written under their own names.
        self.ttnn.dump_tensor(str(staging.path / file_name), host)
        staging.add(file_name)

    def tensorbin_cache(self, groups: int) -> VerifiedDirectory:
        """This card's .tensorbin cache: what its files were made from (the installed ttnn, the run config, the
        QKV interleave groups and the safetensors manifest they were converted from)."""
        source = self.source_manifest
        header = {
            "ttnn": ttnn_version(), "config": self.run_config.name, "qkv_groups": groups,
            "source": sha256_file(source) if source is not None and source.is_file() else None,
        }
        return VerifiedDirectory(self.weight_cache / self.card.arch, header, TENSORBIN_REASONS, ".tensorbin cache")

    # ------------------------------------------------------------------ the ops

    def _device_ids(self, t):
        """Token ids the model hands over: host ids are uploaded here (and freed after the lookup); `forward`'s
        traced inputs are already in their device buffers."""
        if isinstance(t, torch.Tensor):
            return self._token_ids(t, device=self.mesh_device)
        return t

    def embeddings(self, input_ids, token_type_ids, p):
        ttnn = self.ttnn
        batch, seq = self.plan.batch, self.plan.shape.seq  # per chip: what each chip's tensors hold
        ids, types = self._device_ids(input_ids), self._device_ids(token_type_ids)
        positions = self._position_ids(batch * self.chips, seq)
        words = ttnn.embedding(ids, p.word_embeddings.weight, padding_idx=self.shape.pad_token_id, layout=ttnn.TILE_LAYOUT,
                               embeddings_type=ttnn.EmbeddingsType.PADDED, dtype=ttnn.bfloat16, memory_config=ttnn.L1_MEMORY_CONFIG)
        kinds = ttnn.embedding(types, p.token_type_embeddings.weight, layout=ttnn.TILE_LAYOUT,
                               embeddings_type=ttnn.EmbeddingsType.BINARY, dtype=ttnn.bfloat16, memory_config=ttnn.L1_MEMORY_CONFIG)
        where = ttnn.embedding(positions, p.position_embeddings.weight, layout=ttnn.TILE_LAYOUT,
                               embeddings_type=ttnn.EmbeddingsType.GENERIC, dtype=ttnn.bfloat16, memory_config=ttnn.L1_MEMORY_CONFIG)
        for t in (ids, types):
            self.release(t)
        summed = ttnn.add(words, kinds, memory_config=ttnn.L1_MEMORY_CONFIG)
        self.release(words)
        self.release(kinds)
        # The position add rides in the layernorm (as the seed's embeddings): one op and one bf16 rounding fewer.
        normed = ttnn.layer_norm(summed, residual_input_tensor=where, epsilon=self.shape.layer_norm_eps, weight=p.LayerNorm.weight,
                                 bias=p.LayerNorm.bias, memory_config=ttnn.L1_MEMORY_CONFIG)
        self.release(summed)
        self.release(where)
        x = ttnn.reshape(normed, (batch, 1, seq, self.shape.hidden_size))  # a view of `normed`
        if self.plan.sharded:
            out = ttnn.interleaved_to_sharded(
                x, ttnn.CoreCoord(*self.plan.grid), self.plan.ops["self_output"].output.shard_shape,
                ttnn.TensorMemoryLayout.BLOCK_SHARDED, self._orientation(), self._output_dtype("embeddings"),
            )
        else:
            out = ttnn.typecast(x, self._output_dtype("embeddings"), memory_config=self._memory("self_output"))
        self.release(x)
        return out

    def attention_mask(self, attention_mask):
        if isinstance(attention_mask, torch.Tensor):
            return self._additive_mask(attention_mask, device=self.mesh_device)
        return attention_mask  # traced: already in its device buffer

    def _linear(self, op: str, x, p):
        return self.ttnn.linear(x, p.weight, bias=p.bias, program_config=self._program(op),
                                memory_config=self._memory(op), dtype=self._output_dtype(op))

    def qkv(self, x, p):
        return self._linear("qkv", x, p)

    def split_heads(self, qkv, num_heads):
        ttnn = self.ttnn
        if self.plan.sharded:  # per core: its own heads' q, k, v (weights interleaved in plan.groups)
            q, k_t, v = ttnn.experimental.split_query_key_value_and_split_heads(
                qkv, compute_with_storage_grid_size=ttnn.CoreCoord(*self.plan.grid),
                memory_config=self._memory("split_heads"), num_heads=num_heads,
            )
        else:  # this one takes [B, S, 3H] only (rank 3); the reshape is a view
            shape = qkv.padded_shape
            fused = ttnn.reshape(qkv, (shape[0], shape[2], shape[3]))
            q, k_t, v = ttnn.transformer.split_query_key_value_and_split_heads(
                fused, num_heads=num_heads, transpose_key=True, memory_config=self._memory("split_heads"),
            )
        return q, k_t, v

    def q_kt(self, q, k_t):
        return self.ttnn.matmul(q, k_t, program_config=self._program("q_kt"), memory_config=self._memory("q_kt"),
                                dtype=self._output_dtype("q_kt"))

    def softmax(self, scores, mask, scale):
        ttnn = self.ttnn
        shape = scores.padded_shape
        folded = ttnn.reshape(scores, (shape[0], 1, shape[1] * shape[2], shape[3]))  # [B, 1, N*S, S], as the seed
        probs = ttnn.scale_mask_softmax_in_place(folded, scale, mask, program_config=self._program("softmax", "SoftmaxDefaultProgramConfig"))
        return ttnn.reshape(probs, tuple(shape))

    def attention_v(self, probs, v):
        return self.ttnn.matmul(probs, v, program_config=self._program("attention_v"), memory_config=self._memory("attention_v"),
                                dtype=self._output_dtype("attention_v"))

    def concat_heads(self, context):
        return self.ttnn.experimental.nlp_concat_heads(context, memory_config=self._memory("concat_heads"))

    def self_output(self, x, p):
        return self._linear("self_output", x, p)

    def _add_layernorm(self, op: str, x, residual, p, eps):
        ttnn = self.ttnn
        out = ttnn.layer_norm(  # the sharded program writes in place, over the residual (as the seed)
            residual, residual_input_tensor=x, epsilon=eps, weight=p.weight, bias=p.bias,
            program_config=self._program(op, "LayerNormDefaultProgramConfig"), memory_config=self._memory(op),
            compute_kernel_config=ttnn.WormholeComputeKernelConfig(math_fidelity=getattr(ttnn.MathFidelity, LAYERNORM_FIDELITY)),
        )
        if not self.plan.sharded:  # the interleaved program writes a new tensor: the residual's last use was here
            self.release(residual)
        return out

    def attention_add_layernorm(self, x, residual, p, eps):
        return self._add_layernorm("attention_add_layernorm", x, residual, p, eps)

    def ffn_add_layernorm(self, x, residual, p, eps):
        return self._add_layernorm("ffn_add_layernorm", x, residual, p, eps)

    def ff1_gelu(self, x, p):
        return self._linear("ff1_gelu", x, p)

    def ff2(self, x, p):
        return self._linear("ff2", x, p)

    def qa_head(self, x, p):
        ttnn = self.ttnn
        interleaved = ttnn.sharded_to_interleaved(x, ttnn.L1_MEMORY_CONFIG, self._dtype("qa_head_weights")) if self.plan.sharded else x
        logits = ttnn.linear(interleaved, p.weight, bias=p.bias, memory_config=ttnn.L1_MEMORY_CONFIG)
        if interleaved is not x:
            self.release(interleaved)
        if self._capturing:  # the trace writes the logits; `forward` reads them after each execution
            self._captured = logits
            return None, None
        host = self._read_logits(logits).float().reshape(self.plan.batch * self.chips, self.plan.shape.seq, -1)
        self.release(logits)
        return host[..., 0], host[..., 1]
