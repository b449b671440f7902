"""The Tensix sharding plan: every encoder op's program config, derived from shapes and the core grid.

The seed parallelises one grid dimension over the batch (one line of cores per sequence) and the other over
`groups` slices of the hidden dimension, each slice holding whole attention heads (QKV weights are interleaved
in `groups` so that a core's QKV output block already is [q | k | v] of its own heads; split-heads, attention
and concat-heads then stay on the core). From that layout every number follows:

    per_core_M     the rows one core owns, in tiles: one sequence (S/32), or its heads' rows in attention
    per_core_N     the output columns one core owns: N/32 / groups, or the whole row in attention
    in0_block_w    the K width a core already holds (its shard width, or all of K for the batched matmuls)
    out_subblock   the largest h x w that divides the block and fits the destination registers, with
                   w == per_core_N or h == 1 (ttnn's matmul validation: matmul_device_operation.cpp)
    softmax        block = the core's rows x the whole key length; subblock_w = largest divisor that fits
    layernorm      block = the core's shard; two-stage reduction across the line of cores

and is then validated: tiles divide, subblocks fit the registers, every op's shards plus circular buffers fit
the core's free L1 (buffer sizes from the tile sizes of the run config's dtypes), the grid fits the device.
For Grayskull e150, batch 12, BFLOAT8_B-SHARDED this reproduces the seed's tt/model_config.py numbers.

    bertl11 plan --device e150 --batch 12 --config BFLOAT8_B-SHARDED
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace

from .config import BFLOAT8_B, BFLOAT16, DEFAULT_RUN_CONFIG, DRAM, FLOAT32, L1, RUN_CONFIGS, SHARDED, BertShape, RunConfig, get_run_config
from .devices import COL_MAJOR, DEST_TILES_FP32_ACC, DEST_TILES_HALF_SYNC, DEVICES, Device, get_device
from .errors import UserError
from .ops import ENCODER_OPS, OP_TITLES

TILE = 32
# Bytes per 32x32 tile (tt_metal tile_size): bf16 2 B/value; bfp8 1 B/value + 64 shared exponents.
TILE_BYTES = {FLOAT32: 4096, BFLOAT16: 2048, BFLOAT8_B: 1088}
# Intermediate circular buffers of softmax/layernorm hold Float16_b unless fp32 accumulation is on.
INTERMEDIATE_DTYPE = BFLOAT16

INTERLEAVED, BLOCK_SHARDED, HEIGHT_SHARDED = "INTERLEAVED", "BLOCK_SHARDED", "HEIGHT_SHARDED"
MULTICAST, REUSE = "MultiCast", "Reuse"


class PlanError(UserError):
    """A device / batch / config combination the plan refuses, with the reason."""


@dataclass(frozen=True)
class EncoderShape:
    """The encoder dimensions the plan depends on (BERT-large at sequence 384 by default)."""

    seq: int = 384
    hidden: int = 1024
    heads: int = 16
    intermediate: int = 4096

    @classmethod
    def from_bert(cls, shape: BertShape, seq: int = 384) -> "EncoderShape":
        return cls(seq, shape.hidden_size, shape.num_heads, shape.intermediate_size)

    @property
    def head_size(self) -> int:
        return self.hidden // self.heads


BERT_LARGE = EncoderShape()


@dataclass(frozen=True)
class Placement:
    """Where an op's output lives: interleaved in DRAM or L1, or sharded in L1 with this shard shape."""

    layout: str
    buffer: str
    dtype: str
    shard_shape: tuple[int, int] | None = None

    def describe(self) -> str:
        if self.layout == INTERLEAVED:
            return f"{self.buffer} {self.dtype}"
        kind = "block" if self.layout == BLOCK_SHARDED else "height"
        return f"{kind}[{self.shard_shape[0]}x{self.shard_shape[1]}] {self.dtype}"


@dataclass(frozen=True)
class MatmulProgram:
    """ttnn.MatmulMultiCoreReuseMultiCastProgramConfig (MultiCast) or MatmulMultiCoreReuseProgramConfig (Reuse)."""

    kind: str
    grid: tuple[int, int]
    in0_block_w: int
    out_subblock_h: int
    out_subblock_w: int
    per_core_M: int
    per_core_N: int
    transpose_mcast: bool = False
    fused_activation: str | None = None

    def describe(self) -> str:
        act = f", fused {self.fused_activation}" if self.fused_activation else ""
        mcast = ", transpose_mcast" if self.transpose_mcast else ""
        return (
            f"{self.kind} in0_block_w={self.in0_block_w} subblock={self.out_subblock_h}x{self.out_subblock_w} "
            f"per_core={self.per_core_M}x{self.per_core_N}{mcast}{act}"
        )


@dataclass(frozen=True)
class SoftmaxProgram:
    """ttnn.SoftmaxShardedMultiCoreProgramConfig."""

    grid: tuple[int, int]
    subblock_w: int
    block_h: int
    block_w: int

    def describe(self) -> str:
        return f"Sharded subblock_w={self.subblock_w} block={self.block_h}x{self.block_w}"


@dataclass(frozen=True)
class LayerNormProgram:
    """ttnn.LayerNormShardedMultiCoreProgramConfig."""

    grid: tuple[int, int]
    subblock_w: int
    block_h: int
    block_w: int
    inplace: bool = True

    def describe(self) -> str:
        return f"Sharded subblock_w={self.subblock_w} block={self.block_h}x{self.block_w}" + (" inplace" if self.inplace else "")


Program = MatmulProgram | SoftmaxProgram | LayerNormProgram | None


@dataclass(frozen=True)
class OpPlan:
    name: str
    program: Program
    output: Placement
    l1_bytes: int = 0  # peak per-core L1 while the op runs: live shards + circular buffers


@dataclass(frozen=True)
class Plan:
    device: Device
    batch: int
    config: RunConfig
    shape: EncoderShape
    orientation: str
    groups: int  # hidden slices (one per core along the non-batch grid dimension)
    ops: dict[str, OpPlan] = field(default_factory=dict)
    fp32_dest_acc: bool = False

    @property
    def grid(self) -> tuple[int, int]:
        """(x, y) of the cores used: batch along x for COL_MAJOR, along y for ROW_MAJOR."""
        return (self.batch, self.groups) if self.orientation == COL_MAJOR else (self.groups, self.batch)

    @property
    def sharded(self) -> bool:
        return self.config.memory == SHARDED

    @property
    def qkv_groups(self) -> int:
        """How many groups the fused QKV weight's columns are interleaved in (1: plain [q | k | v])."""
        return self.groups if self.sharded else 1

    def core(self, batch_row: int, group: int) -> tuple[int, int]:
        """The (x, y) core holding this sequence's hidden slice `group`."""
        return (batch_row, group) if self.orientation == COL_MAJOR else (group, batch_row)

    @property
    def dest_tiles(self) -> int:
        return DEST_TILES_FP32_ACC if self.fp32_dest_acc else DEST_TILES_HALF_SYNC


def interleave_qkv(t, groups: int):
    """Fused QKV columns [q | k | v] -> `groups` runs of [q_g | k_g | v_g], so each core's block of the QKV
    output holds q, k and v of its own heads (the seed's QKV_INTERLEAVED; a no-op for one group)."""
    *lead, n = t.shape
    return t.reshape(*lead, 3, groups, n // (3 * groups)).transpose(-3, -2).reshape(*lead, n)


# ---------------------------------------------------------------------------------------------- derivation


def largest_divisor(n: int, limit: int) -> int:
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def out_subblock(per_core_M: int, per_core_N: int, dest_tiles: int) -> tuple[int, int]:
    """Largest h x w dividing the block within the registers, with w == per_core_N or h == 1; ties go wide."""
    best = (0, 0, 0)
    for w in range(1, min(per_core_N, dest_tiles) + 1):
        if per_core_N % w:
            continue
        h_limit = dest_tiles // w if w == per_core_N else 1
        h = largest_divisor(per_core_M, h_limit)
        best = max(best, (h * w, w, h))
    return best[2], best[1]


def hidden_groups(shape: EncoderShape, room: int) -> int:
    """The most hidden slices that fit `room` cores and keep whole heads on a core."""
    hidden_tiles = shape.hidden // TILE
    for g in range(min(room, shape.heads), 0, -1):
        if shape.heads % g == 0 and hidden_tiles % g == 0:
            return g
    return 1


def choose_layout(device: Device, batch: int, shape: EncoderShape) -> tuple[str, int]:
    """(orientation, groups): the device's preferred orientation if a line of `batch` cores fits along its batch
    axis with the full number of hidden groups across, else the other orientation (as the seed tries both)."""
    x, y = device.grid
    full = hidden_groups(shape, max(x, y))
    for orientation in device.orientations:
        batch_room, group_room = (x, y) if orientation == COL_MAJOR else (y, x)
        if batch <= batch_room and hidden_groups(shape, group_room) == full:
            return orientation, full
    raise PlanError(
        f"batch {batch} needs {batch}x{full} cores (a line of {full} hidden groups per sequence); {device.title}'s compute grid "
        f"is {x}x{y}, so it runs batch {device.batch_range[0]}-{device.batch_range[1]}"
    )


def _matmul(kind, grid, orientation, m_tiles, n_tiles, k_block, dest, activation=None) -> MatmulProgram:
    h, w = out_subblock(m_tiles, n_tiles, dest)
    return MatmulProgram(kind, grid, k_block, h, w, m_tiles, n_tiles, kind == MULTICAST and orientation == COL_MAJOR, activation)


def derive_programs(plan: Plan) -> dict[str, Program]:
    s = plan.shape
    g, grid, dest, orient = plan.groups, plan.grid, plan.dest_tiles, plan.orientation
    seq_t, hidden_t, ff_t, head_t = s.seq // TILE, s.hidden // TILE, s.intermediate // TILE, s.head_size // TILE
    heads_per_core = s.heads // g
    gelu = "gelu"
    programs: dict[str, Program] = {
        # The linears: rows = one sequence per line of cores, columns = N / groups; K block = the shard width.
        "qkv": _matmul(MULTICAST, grid, orient, seq_t, 3 * hidden_t // g, hidden_t // g, dest),
        "self_output": _matmul(MULTICAST, grid, orient, seq_t, hidden_t // g, hidden_t // g, dest),
        "ff1_gelu": _matmul(MULTICAST, grid, orient, seq_t, ff_t // g, hidden_t // g, dest, gelu),
        "ff2": _matmul(MULTICAST, grid, orient, seq_t, hidden_t // g, ff_t // g, dest),
        # Attention: each core owns its heads' rows; K is the whole head (Q.K^T) or the whole sequence (.V).
        "q_kt": _matmul(REUSE, grid, orient, heads_per_core * seq_t, seq_t, head_t, dest),
        "attention_v": _matmul(REUSE, grid, orient, heads_per_core * seq_t, head_t, seq_t, dest),
        "split_heads": None,
        "concat_heads": None,
    }
    if plan.sharded:
        programs["softmax"] = SoftmaxProgram(grid, largest_divisor(seq_t, dest), heads_per_core * seq_t, seq_t)
        norm = LayerNormProgram(grid, largest_divisor(hidden_t // g, dest), seq_t, hidden_t // g)
    else:
        programs["softmax"] = norm = None  # ttnn's default interleaved programs
    programs["attention_add_layernorm"] = programs["ffn_add_layernorm"] = norm
    return programs


# Op output -> the run config's tensor name (decides its dtype), in encoder order.
OUTPUT_TENSORS = {
    "qkv": "qkv_output", "split_heads": "qkv_output", "q_kt": "q_kt_output", "softmax": "softmax_output",
    "attention_v": "attention_v_output", "concat_heads": "attention_v_output", "self_output": "self_output_output",
    "attention_add_layernorm": "layernorm_output", "ff1_gelu": "ff1_output", "ff2": "ff2_output",
    "ffn_add_layernorm": "layernorm_output",
}


def output_elements(shape: EncoderShape, batch: int) -> dict[str, tuple[int, int]]:
    """Each op's output as a 2D [rows, columns] matrix (attention outputs folded over batch x heads)."""
    s = shape
    tokens, head_rows = batch * s.seq, batch * s.heads * s.seq
    return {
        "qkv": (tokens, 3 * s.hidden), "split_heads": (3 * head_rows, s.head_size), "q_kt": (head_rows, s.seq),
        "softmax": (head_rows, s.seq), "attention_v": (head_rows, s.head_size), "concat_heads": (tokens, s.hidden),
        "self_output": (tokens, s.hidden), "attention_add_layernorm": (tokens, s.hidden),
        "ff1_gelu": (tokens, s.intermediate), "ff2": (tokens, s.hidden), "ffn_add_layernorm": (tokens, s.hidden),
    }


def _placement(plan: Plan, op: str, buffer: str) -> Placement:
    dtype = plan.config.dtype_of(OUTPUT_TENSORS[op])
    if not plan.sharded:
        return Placement(INTERLEAVED, buffer, dtype)
    rows, cols = output_elements(plan.shape, plan.batch)[op]
    cores = plan.batch * plan.groups
    if cols == plan.shape.head_size or op in ("q_kt", "softmax"):  # attention: whole rows, split by heads
        return Placement(HEIGHT_SHARDED, L1, dtype, (rows // cores, cols))
    return Placement(BLOCK_SHARDED, L1, dtype, (rows // plan.batch, cols // plan.groups))


# ---------------------------------------------------------------------------------------------- L1 accounting


def _bytes(tiles: int, dtype: str) -> int:
    return tiles * TILE_BYTES[dtype]


def _tensor_l1(plan: Plan, placement: Placement, rows: int, cols: int) -> int:
    """Per-core L1 a tensor occupies: its shard, its share of the L1 banks (interleaved), or none (DRAM)."""
    if placement.buffer == DRAM:
        return 0
    if placement.layout != INTERLEAVED:
        r, c = placement.shard_shape
        return _bytes(r // TILE * (c // TILE), placement.dtype)
    pages = rows // TILE * (cols // TILE)
    return _bytes(-(-pages // plan.device.cores), placement.dtype)  # round-robin pages over every core's bank


def _matmul_cbs(plan: Plan, prog: MatmulProgram, in0_dtype: str, out: Placement, k_tiles: int, in0_sharded: bool) -> int:
    """Circular buffers the matmul allocates beyond the tensors themselves (sizes as in ttnn's program factories:
    matmul_multicore_reuse_mcast_2d_program_factory.cpp, matmul_multicore_reuse_program_factory.cpp)."""
    weights = plan.config.dtype_of("matmul_weights")
    blocks = k_tiles // prog.in0_block_w
    depth = 2 if blocks > 1 else 1  # double-buffered when K takes more than one block
    out_cb = 0 if out.layout != INTERLEAVED else _bytes(prog.per_core_M * prog.per_core_N, out.dtype)
    if prog.kind == REUSE:  # batched attention matmul: sharded operands are read in place
        if in0_sharded:
            return out_cb
        return (
            _bytes(prog.per_core_M * prog.in0_block_w * depth, in0_dtype)
            + _bytes(prog.per_core_N * prog.in0_block_w * depth, in0_dtype)
            + out_cb
        )
    in0_cb = _bytes(prog.per_core_M * prog.in0_block_w * depth, in0_dtype)  # multicast receive buffer
    in1_cb = _bytes(prog.per_core_N * prog.in0_block_w * depth, weights)
    bias_cb = _bytes(prog.per_core_N, weights)
    return in0_cb + in1_cb + bias_cb + out_cb


def _softmax_cbs(plan: Plan, prog: SoftmaxProgram | None, width_tiles: int) -> int:
    """softmax_program_factory_attention_optimized_sharded.cpp: scalers, scaled-mask, exps, 1/sum, mask rows."""
    mask = plan.config.dtype_of("attention_mask")
    row = prog.block_w if prog else width_tiles
    return _bytes(3 * row + 4, INTERMEDIATE_DTYPE) + _bytes(row * (1 if prog else 2), mask)


def _layernorm_cbs(plan: Plan, prog: LayerNormProgram | None, width_tiles: int) -> int:
    """An estimate of layernorm_op_multi_core_sharded.cpp's set: x + residual and x - mean blocks, gamma and beta,
    per-row partial and global statistics (interleaved: one tile row at a time)."""
    if prog is None:
        return _bytes(4 * width_tiles + 8, INTERMEDIATE_DTYPE)
    return _bytes(2 * prog.block_h * prog.block_w + 2 * prog.block_w + 6 * prog.block_h + 2, INTERMEDIATE_DTYPE)


# The encoder's dataflow: op -> (inputs, tensors kept alive across it for a later residual add).
DATAFLOW = {
    "qkv": (("input",), ()),
    "split_heads": (("qkv",), ("input",)),
    "q_kt": (("split_heads",), ("input",)),  # split_heads stands for Q, K^T and V together
    "softmax": (("q_kt",), ("input", "split_heads")),
    "attention_v": (("softmax",), ("input", "split_heads")),
    "concat_heads": (("attention_v",), ("input",)),
    "self_output": (("concat_heads",), ("input",)),
    "attention_add_layernorm": (("self_output", "input"), ()),
    "ff1_gelu": (("attention_add_layernorm",), ()),
    "ff2": (("ff1_gelu",), ("attention_add_layernorm",)),
    "ffn_add_layernorm": (("ff2", "attention_add_layernorm"), ()),
}
IN_PLACE = {"softmax", "attention_add_layernorm", "ffn_add_layernorm"}


def l1_per_op(plan: Plan, placements: dict[str, Placement]) -> dict[str, int]:
    """Peak per-core L1 bytes while each op runs: live tensors + the op's circular buffers."""
    dims = output_elements(plan.shape, plan.batch)
    dims["input"] = dims["self_output"]
    placements = {**placements, "input": replace(placements["attention_add_layernorm"], dtype=plan.config.dtype_of("qkv_input"))}
    programs = {name: op.program for name, op in plan.ops.items()}
    seq_t, hidden_t, ff_t = plan.shape.seq // TILE, plan.shape.hidden // TILE, plan.shape.intermediate // TILE
    k_tiles = {"qkv": hidden_t, "self_output": hidden_t, "ff1_gelu": hidden_t, "ff2": ff_t,
               "q_kt": plan.shape.head_size // TILE, "attention_v": seq_t}
    usage = {}
    for op, (inputs, held) in DATAFLOW.items():
        live = set(inputs) | set(held) | ({op} if op not in IN_PLACE else set())
        total = sum(_tensor_l1(plan, placements[t], *dims[t]) for t in live)
        prog = programs[op]
        if op in k_tiles:
            source = placements[inputs[0]]
            total += _matmul_cbs(plan, prog, source.dtype, placements[op], k_tiles[op], source.layout != INTERLEAVED)
        elif op == "softmax":
            total += _softmax_cbs(plan, prog, seq_t)
        elif op in ("attention_add_layernorm", "ffn_add_layernorm"):
            total += _layernorm_cbs(plan, prog, hidden_t)
        usage[op] = total
    return usage


def _k_tiles(shape: EncoderShape, op: str, prog: MatmulProgram, groups: int) -> int:
    """The K a core holds for a matmul, in tiles: its shard width (multicast) or the whole K (batched)."""
    k = {"q_kt": shape.head_size, "attention_v": shape.seq, "ff2": shape.intermediate}.get(op, shape.hidden) // TILE
    return k // groups if prog.kind == MULTICAST else k


def _fit_l1(plan: Plan) -> tuple[Plan, dict[str, Placement], dict[str, int]]:
    """Make the plan fit L1 where it can. In L1 configs, first move the largest L1 outputs to DRAM (the seed does
    this by hand: BFLOAT16-L1 keeps the attention scores and the FF1 output in DRAM); then narrow the K block of
    a matmul that still overflows (the next divisor of the K it holds). Stops when nothing helps any more."""
    buffer = L1 if plan.config.memory in (L1, SHARDED) else DRAM
    placements = {op: _placement(plan, op, buffer) for op in ENCODER_OPS}
    dims = output_elements(plan.shape, plan.batch)
    spill_order = [op for op in sorted(ENCODER_OPS, key=lambda op: -dims[op][0] * dims[op][1] * TILE_BYTES[placements[op].dtype])
                   if op != "softmax"]
    while True:
        placements["softmax"] = replace(placements["softmax"], buffer=placements["q_kt"].buffer)  # in place
        usage = l1_per_op(plan, placements)
        over = [op for op in ENCODER_OPS if usage[op] > plan.device.l1_free_bytes]
        if not over:
            return plan, placements, usage
        live_in_overflow = {t for op in over for t in (*DATAFLOW[op][0], *DATAFLOW[op][1], op)}
        spill = next((op for op in spill_order if placements[op].buffer == L1 and op in live_in_overflow), None)
        if spill is not None:
            placements[spill] = replace(placements[spill], buffer=DRAM)
            continue
        narrowed = False
        for op in over:
            prog = plan.ops[op].program
            if isinstance(prog, MatmulProgram) and prog.in0_block_w > 1:
                narrower = largest_divisor(_k_tiles(plan.shape, op, prog, plan.groups), prog.in0_block_w - 1)
                plan = replace(plan, ops={**plan.ops, op: replace(plan.ops[op], program=replace(prog, in0_block_w=narrower))})
                narrowed = True
        if not narrowed:
            return plan, placements, usage


# ---------------------------------------------------------------------------------------------- validation


def problems(plan: Plan) -> list[str]:
    """Every reason this plan cannot run, empty when it can."""
    found = []
    s, dev = plan.shape, plan.device
    x, y = plan.grid
    if x > dev.grid[0] or y > dev.grid[1]:
        found.append(f"grid {x}x{y} exceeds {dev.title}'s compute grid {dev.grid[0]}x{dev.grid[1]}")
    for name, size in (("sequence", s.seq), ("hidden", s.hidden), ("intermediate", s.intermediate), ("head size", s.head_size)):
        if size % TILE:
            found.append(f"{name} {size} is not a multiple of the {TILE}-wide tile")
    if s.heads % plan.groups or (s.hidden // TILE) % plan.groups or (s.intermediate // TILE) % plan.groups:
        found.append(f"{plan.groups} groups do not divide {s.heads} heads / hidden / intermediate tiles evenly")
    dims = output_elements(s, plan.batch)
    for name, op in plan.ops.items():
        prog = op.program
        rows, cols = dims[name]
        if isinstance(prog, MatmulProgram):
            h, w = prog.out_subblock_h, prog.out_subblock_w
            if prog.per_core_M % h or prog.per_core_N % w:
                found.append(f"{name}: subblock {h}x{w} does not divide the {prog.per_core_M}x{prog.per_core_N} block")
            if h * w > plan.dest_tiles:
                found.append(f"{name}: subblock {h}x{w} = {h * w} tiles exceeds the {plan.dest_tiles} destination registers")
            if w != prog.per_core_N and h != 1:
                found.append(f"{name}: subblock width {w} != per_core_N {prog.per_core_N} needs subblock height 1")
            cores = (rows // TILE // prog.per_core_M) * (cols // TILE // prog.per_core_N)
            if rows % (prog.per_core_M * TILE) or cols % (prog.per_core_N * TILE) or cores != plan.batch * plan.groups:
                found.append(f"{name}: {prog.per_core_M}x{prog.per_core_N}-tile blocks do not tile the {rows}x{cols} output over {x}x{y} cores")
            shard_k = _k_tiles(s, name, prog, plan.groups)
            if shard_k % prog.in0_block_w:
                found.append(f"{name}: in0_block_w {prog.in0_block_w} does not divide the {shard_k}-tile K a core holds")
        elif isinstance(prog, (SoftmaxProgram, LayerNormProgram)):
            if prog.block_w % prog.subblock_w or prog.subblock_w > plan.dest_tiles:
                found.append(f"{name}: subblock_w {prog.subblock_w} must divide block_w {prog.block_w} and fit {plan.dest_tiles} registers")
            if isinstance(prog, SoftmaxProgram) and prog.block_w * TILE != s.seq:
                found.append(f"{name}: softmax needs whole rows on a core (block_w {prog.block_w} != {s.seq // TILE})")
        if op.l1_bytes > dev.l1_free_bytes:
            found.append(
                f"{name}: needs {op.l1_bytes / 1024:.0f} KiB of L1 per core, {dev.title} has {dev.l1_free_bytes / 1024:.0f} KiB free"
            )
    return found


def make_plan(device: str | Device, batch: int, config: str | RunConfig = DEFAULT_RUN_CONFIG, shape: EncoderShape = BERT_LARGE) -> Plan:
    """Derive and validate the plan; `PlanError` says why a combination cannot run."""
    device = device if isinstance(device, Device) else get_device(device)
    config = config if isinstance(config, RunConfig) else get_run_config(config)
    if config.torch_only:
        raise PlanError(f"{config.name} is a torch-only reference config; Tenstorrent plans exist for the others")
    if batch < 1:
        raise PlanError(f"batch must be at least 1, got {batch}")
    orientation, groups = choose_layout(device, batch, shape)
    lo, hi = device.batch_range
    if not lo <= batch <= hi:
        raise PlanError(f"{device.title} runs batch {lo}-{hi}, not {batch}")
    plan = Plan(device, batch, config, shape, orientation, groups)
    plan = replace(plan, ops={name: OpPlan(name, prog, None) for name, prog in derive_programs(plan).items()})
    plan, placements, usage = _fit_l1(plan)
    plan = replace(plan, ops={n: OpPlan(n, plan.ops[n].program, placements[n], usage[n]) for n in ENCODER_OPS})
    found = problems(plan)
    if found:
        raise PlanError(f"{device.name} batch {batch} {config.name}: " + "; ".join(found))
    return plan


# ---------------------------------------------------------------------------------------------- presentation


def format_plan(plan: Plan) -> str:
    dev = plan.device
    x, y = plan.grid
    lines = [
        f"{dev.title}, batch {plan.batch}, {plan.config.name}, seq {plan.shape.seq} hidden {plan.shape.hidden}",
        f"grid {x}x{y} of {dev.grid[0]}x{dev.grid[1]} ({plan.orientation}: batch along {'x' if plan.orientation == COL_MAJOR else 'y'}, "
        f"{plan.groups} hidden groups of {plan.shape.heads // plan.groups} heads), QKV weights interleaved in {plan.qkv_groups}",
        f"L1 per core: {dev.l1_bytes // 1024} KiB, {dev.l1_free_bytes // 1024} KiB free for buffers",
        "",
    ]
    rows = [("#", "op", "program config", "output", "L1/core")]
    for i, name in enumerate(ENCODER_OPS, 1):
        op = plan.ops[name]
        program = op.program.describe() if op.program else ("data movement" if "heads" in name else "default (interleaved)")
        rows.append((str(i), OP_TITLES[name], program, op.output.describe(), f"{op.l1_bytes / 1024:.0f} KiB"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="e150", choices=sorted(DEVICES), help="Tenstorrent device (default e150)")
    parser.add_argument("--batch", type=int, default=12, help="sequences per batch (default 12)")
    parser.add_argument("--config", default=DEFAULT_RUN_CONFIG, choices=[n for n, c in RUN_CONFIGS.items() if not c.torch_only])


def run(args: argparse.Namespace) -> int:
    print(format_plan(make_plan(args.device, args.batch, args.config)))
    return 0
