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
For Grayskull e150, batch 12, BFLOAT8_B-SHARDED this reproduces the seed's tt/model_config.py numbers
(`bertl11 plan --card e150 --batch 12 --config BFLOAT8_B-SHARDED` prints it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .config import BFLOAT8_B, BFLOAT16, DEFAULT_RUN_CONFIG, DRAM, FLOAT32, L1, SHARDED, BertShape, RunConfig, get_run_config
from .devices import COL_MAJOR, DEST_TILES_FP32_ACC, DEST_TILES_HALF_SYNC, Device, get_device
from .errors import UserError, require_at_least
from .ops import BATCHED_MATMUL, DATA_MOVEMENT, ENCODER, ENCODER_OPS, LAYER_INPUT, LAYERNORM, LINEAR, OPS, SOFTMAX, OpSpec

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

    @property
    def qkv_width(self) -> int:
        return 3 * self.hidden

    def dims(self, batch: int) -> dict[str, int]:
        """The sizes `ops.OpSpec` names its rows, columns and K in."""
        head_rows = batch * self.heads * self.seq
        return {"tokens": batch * self.seq, "head_rows": head_rows, "qkv_head_rows": 3 * head_rows, "seq": self.seq,
                "hidden": self.hidden, "qkv_width": self.qkv_width, "intermediate": self.intermediate, "head_size": self.head_size}


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
class _RowBlockProgram:
    """A sharded row-wise program: each core a block_h x block_w block, subblock_w tiles at a time."""

    grid: tuple[int, int]
    subblock_w: int
    block_h: int
    block_w: int

    def describe(self) -> str:
        return f"Sharded subblock_w={self.subblock_w} block={self.block_h}x{self.block_w}"


@dataclass(frozen=True)
class SoftmaxProgram(_RowBlockProgram):
    """ttnn.SoftmaxShardedMultiCoreProgramConfig."""


@dataclass(frozen=True)
class LayerNormProgram(_RowBlockProgram):
    """ttnn.LayerNormShardedMultiCoreProgramConfig."""

    inplace: bool = True

    def describe(self) -> str:
        return super().describe() + (" inplace" if self.inplace else "")


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
    mask_shape: tuple[int, int, int, int] | None = None  # the additive attention mask as the softmax reads it

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


def attention_mask_shape(plan: Plan) -> tuple[int, int, int, int]:
    """The mask the softmax is handed: the sharded program reads it row-major, 32 keys per row ([B, 1, S/32, 32],
    as the seed); the default program takes a tiled [B, 1, 1, S] that broadcasts over heads and rows."""
    batch, seq = plan.batch, plan.shape.seq
    return (batch, 1, seq // TILE, TILE) if plan.sharded else (batch, 1, 1, seq)


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


def _tiles(shape: EncoderShape, dimension: str) -> int:
    return shape.dims(1)[dimension] // TILE


def derive_program(plan: Plan, op: OpSpec) -> Program:
    s = plan.shape
    g, grid, dest, orient = plan.groups, plan.grid, plan.dest_tiles, plan.orientation
    seq_t, hidden_t = s.seq // TILE, s.hidden // TILE
    heads_per_core = s.heads // g
    if op.kind == LINEAR:
        # Rows = one sequence per line of cores, columns = N / groups; K block = the shard width.
        return _matmul(MULTICAST, grid, orient, seq_t, _tiles(s, op.columns) // g, _tiles(s, op.k) // g, dest, op.activation)
    if op.kind == BATCHED_MATMUL:
        # Attention: each core owns its heads' rows; K is the whole head (Q.K^T) or the whole sequence (.V).
        return _matmul(REUSE, grid, orient, heads_per_core * seq_t, _tiles(s, op.columns), _tiles(s, op.k), dest)
    if op.kind == DATA_MOVEMENT or not plan.sharded:
        return None  # data movement has no program; interleaved softmax and layernorm take ttnn's defaults
    if op.kind == SOFTMAX:
        return SoftmaxProgram(grid, largest_divisor(seq_t, dest), heads_per_core * seq_t, seq_t)
    if op.kind == LAYERNORM:
        return LayerNormProgram(grid, largest_divisor(hidden_t // g, dest), seq_t, hidden_t // g)
    raise ValueError(f"{op.name}: no program for an op of kind {op.kind!r}")


def output_elements(shape: EncoderShape, batch: int) -> dict[str, tuple[int, int]]:
    """Each op's output as a 2D [rows, columns] matrix (attention outputs folded over batch x heads)."""
    dims = shape.dims(batch)
    return {op.name: (dims[op.rows], dims[op.columns]) for op in ENCODER}


def _placement(plan: Plan, op: OpSpec, buffer: str) -> Placement:
    dtype = plan.config.dtype_of(op.output)
    if not plan.sharded:
        return Placement(INTERLEAVED, buffer, dtype)
    rows, cols = output_elements(plan.shape, plan.batch)[op.name]
    cores = plan.batch * plan.groups
    if op.per_head:  # attention: whole rows, split by heads
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


def l1_per_op(plan: Plan, placements: dict[str, Placement]) -> dict[str, int]:
    """Peak per-core L1 bytes while each op runs: live tensors (`OpSpec.inputs`, `held` and its output unless
    written in place) + the op's circular buffers."""
    dims = output_elements(plan.shape, plan.batch)
    dims[LAYER_INPUT] = dims["self_output"]
    layer_input = replace(placements["attention_add_layernorm"], dtype=plan.config.dtype_of("qkv_input"))
    placements = {**placements, LAYER_INPUT: layer_input}
    seq_t, hidden_t = plan.shape.seq // TILE, plan.shape.hidden // TILE
    usage = {}
    for op in ENCODER:
        live = set(op.inputs) | set(op.held) | (set() if op.in_place else {op.name})
        total = sum(_tensor_l1(plan, placements[t], *dims[t]) for t in live)
        prog = plan.ops[op.name].program
        if op.kind in (LINEAR, BATCHED_MATMUL):
            source = placements[op.inputs[0]]
            total += _matmul_cbs(plan, prog, source.dtype, placements[op.name], _tiles(plan.shape, op.k), source.layout != INTERLEAVED)
        elif op.kind == SOFTMAX:
            total += _softmax_cbs(plan, prog, seq_t)
        elif op.kind == LAYERNORM:
            total += _layernorm_cbs(plan, prog, hidden_t)
        usage[op.name] = total
    return usage


def _k_tiles(shape: EncoderShape, op: OpSpec, prog: MatmulProgram, groups: int) -> int:
    """The K a core holds for a matmul, in tiles: its shard width (multicast) or the whole K (batched)."""
    k = _tiles(shape, op.k)
    return k // groups if prog.kind == MULTICAST else k


def _fit_l1(plan: Plan) -> tuple[Plan, dict[str, Placement], dict[str, int]]:
    """Make the plan fit L1 where it can. In L1 configs, first move the largest L1 outputs to DRAM (the seed does
    this by hand: BFLOAT16-L1 keeps the attention scores and the FF1 output in DRAM); then narrow the K block of
    a matmul that still overflows (the next divisor of the K it holds). Stops when nothing helps any more."""
    buffer = L1 if plan.config.memory in (L1, SHARDED) else DRAM
    placements = {op.name: _placement(plan, op, buffer) for op in ENCODER}
    dims = output_elements(plan.shape, plan.batch)
    spill_order = [op for op in sorted(ENCODER_OPS, key=lambda op: -dims[op][0] * dims[op][1] * TILE_BYTES[placements[op].dtype])
                   if op != "softmax"]
    while True:
        placements["softmax"] = replace(placements["softmax"], buffer=placements["q_kt"].buffer)  # in place
        usage = l1_per_op(plan, placements)
        over = [op for op in ENCODER_OPS if usage[op] > plan.device.l1_free_bytes]
        if not over:
            return plan, placements, usage
        live_in_overflow = {t for op in over for t in (*OPS[op].inputs, *OPS[op].held, op)}
        spill = next((op for op in spill_order if placements[op].buffer == L1 and op in live_in_overflow), None)
        if spill is not None:
            placements[spill] = replace(placements[spill], buffer=DRAM)
            continue
        narrowed = False
        for op in over:
            prog = plan.ops[op].program
            if isinstance(prog, MatmulProgram) and prog.in0_block_w > 1:
                narrower = largest_divisor(_k_tiles(plan.shape, OPS[op], prog, plan.groups), prog.in0_block_w - 1)
                plan = replace(plan, ops={**plan.ops, op: replace(plan.ops[op], program=replace(prog, in0_block_w=narrower))})
                narrowed = True
        if not narrowed:
            return plan, placements, usage


# ---------------------------------------------------------------------------------------------- validation


def problems(plan: Plan) -> list[str]:
    """Every reason this plan cannot run, empty when it can: the plan's own arithmetic, then the checks ttnn's
    device operations make before they accept a program config (`_op_problems`)."""
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
    if found:  # the per-op rules below assume whole tiles and whole groups
        return found
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
            shard_k = _k_tiles(s, OPS[name], prog, plan.groups)
            if shard_k % prog.in0_block_w:
                found.append(f"{name}: in0_block_w {prog.in0_block_w} does not divide the {shard_k}-tile K a core holds")
        elif isinstance(prog, (SoftmaxProgram, LayerNormProgram)):
            if prog.block_w % prog.subblock_w or prog.subblock_w > plan.dest_tiles:
                found.append(f"{name}: subblock_w {prog.subblock_w} must divide block_w {prog.block_w} and fit {plan.dest_tiles} registers")
        if op.l1_bytes > dev.l1_free_bytes:
            found.append(
                f"{name}: needs {op.l1_bytes / 1024:.0f} KiB of L1 per core, {dev.title} has {dev.l1_free_bytes / 1024:.0f} KiB free"
            )
    return found + _op_problems(plan)


# ttnn's own checks, ported so that a plan the card would refuse is refused here, in one line, before any device work.
# Each reads tenstorrent/tt-metal ttnn/cpp/ttnn/operations/<path>; docs/sources.md section "Device-side validations".
MATMUL_VALIDATION = "matmul/device/matmul_device_operation.cpp"
SOFTMAX_VALIDATION = "normalization/softmax/device/softmax_device_operation.cpp"
LAYERNORM_VALIDATION = "normalization/layernorm/device/layernorm_device_operation.cpp"
SPLIT_HEADS_FACTORY = ("experimental/transformer/split_query_key_value_and_split_heads/device/"
                       "split_query_key_value_and_split_heads_sharded_program_factory.cpp")
# The sharded split program moves two heads per core and tensor (its num_heads_per_tensor is a constant 2).
SPLIT_HEADS_PER_CORE = 2


def _shard_tiles(placement: Placement) -> tuple[int, int]:
    return placement.shard_shape[0] // TILE, placement.shard_shape[1] // TILE


def _matmul_problems(plan: Plan, name: str, prog: MatmulProgram) -> list[str]:
    """MatmulMultiCoreReuseMultiCastProgramConfig (the linears) and MatmulMultiCoreReuseProgramConfig (attention)."""
    found, s, spec = [], plan.shape, OPS[name]
    first = spec.inputs[0]  # the layer's input is the previous layer's last output
    source = plan.ops["ffn_add_layernorm" if first == LAYER_INPUT else first].output
    if prog.kind == MULTICAST:
        if plan.sharded:
            shard_rows, shard_cols = _shard_tiles(source)
            if prog.per_core_M != shard_rows:
                found.append(f"{name}: per_core_M {prog.per_core_M} must equal the input shard height {shard_rows} tiles ({MATMUL_VALIDATION})")
            if shard_cols % prog.in0_block_w:
                found.append(f"{name}: the input shard width {shard_cols} tiles must be a multiple of in0_block_w {prog.in0_block_w} ({MATMUL_VALIDATION})")
            if prog.transpose_mcast != (plan.orientation == COL_MAJOR):
                found.append(f"{name}: transpose_mcast={prog.transpose_mcast} needs a {'COL' if prog.transpose_mcast else 'ROW'}_MAJOR "
                             f"block-sharded input, the plan shards {plan.orientation} ({MATMUL_VALIDATION})")
            if plan.ops[name].output.layout != BLOCK_SHARDED:
                found.append(f"{name}: a sharded multicast matmul writes BLOCK_SHARDED only ({MATMUL_VALIDATION})")
        return found
    # Reuse: a core owns whole output rows (N == per_core_N) and whole matrices of the batch, or a part of one.
    n_tiles, m_tiles = _tiles(s, spec.columns), s.seq // TILE
    total_m = plan.batch * s.heads * m_tiles
    if prog.per_core_N != n_tiles:
        found.append(f"{name}: per_core_N {prog.per_core_N} must equal N = {n_tiles} tiles ({MATMUL_VALIDATION})")
    if (prog.per_core_M % m_tiles or total_m % prog.per_core_M) if prog.per_core_M > m_tiles else m_tiles % prog.per_core_M:
        found.append(f"{name}: per_core_M {prog.per_core_M} must divide, or be a multiple of, M = {m_tiles} tiles "
                     f"and divide the {total_m}-tile total ({MATMUL_VALIDATION})")
    if plan.sharded:
        shard_rows, shard_cols = _shard_tiles(source)
        if spec.inputs[0] == "split_heads":  # its placement stacks a core's q, k and v; the matmul reads q
            shard_rows //= 3
        k_tiles = _tiles(s, spec.k)
        if not shard_cols == k_tiles == prog.in0_block_w:
            found.append(f"{name}: a height-sharded input needs shard width = K = in0_block_w, "
                         f"got {shard_cols}, {k_tiles}, {prog.in0_block_w} tiles ({MATMUL_VALIDATION})")
        if prog.per_core_M != shard_rows:
            found.append(f"{name}: per_core_M {prog.per_core_M} must equal the input shard height {shard_rows} tiles ({MATMUL_VALIDATION})")
    return found


def _softmax_problems(plan: Plan, prog: SoftmaxProgram | None) -> list[str]:
    found, s = [], plan.shape
    mask = plan.mask_shape
    if mask is not None and mask[0] != plan.batch:
        found.append(f"softmax: the mask's batch {mask[0]} must equal the scores' batch {plan.batch} ({SOFTMAX_VALIDATION})")
    if plan.sharded and mask is not None and mask != (plan.batch, 1, s.seq // TILE, TILE):
        found.append(f"softmax: a row-major mask must be [B, 1, S/32, 32] = {[plan.batch, 1, s.seq // TILE, TILE]}, "
                     f"got {list(mask)} ({SOFTMAX_VALIDATION})")
    if prog is None:
        return found
    if prog.block_w * TILE != s.seq:
        found.append(f"softmax: the shard width must be the whole key row: block_w {prog.block_w} != {s.seq // TILE} ({SOFTMAX_VALIDATION})")
    x, y = prog.grid
    shards = plan.batch * s.heads * s.seq * s.seq // (prog.block_w * prog.block_h * TILE * TILE)
    if shards != x * y:
        found.append(f"softmax: {shards} shards of {prog.block_h}x{prog.block_w} tiles must be one per core of the {x}x{y} grid ({SOFTMAX_VALIDATION})")
    return found


def _layernorm_problems(plan: Plan, name: str, prog: LayerNormProgram) -> list[str]:
    """Block sharded, two-dimensional: block_w = ceil(K tiles / cores across), block_h = M tiles / cores down."""
    s = plan.shape
    m_tiles, k_tiles = plan.batch * s.seq // TILE, s.hidden // TILE
    x, y = prog.grid
    across, down = (x, y) if plan.orientation != COL_MAJOR else (y, x)
    found = []
    if prog.block_w != -(-k_tiles // across):
        found.append(f"{name}: block_w {prog.block_w} must be {k_tiles} hidden tiles / {across} cores ({LAYERNORM_VALIDATION})")
    if prog.block_h != m_tiles // down:
        found.append(f"{name}: block_h {prog.block_h} must be {m_tiles} row tiles / {down} cores ({LAYERNORM_VALIDATION})")
    return found


def _split_problems(plan: Plan) -> list[str]:
    s = plan.shape
    per_core = s.heads // plan.groups
    if per_core != SPLIT_HEADS_PER_CORE:
        return [f"split heads: the sharded split moves {SPLIT_HEADS_PER_CORE} heads per core; {s.heads} heads over "
                f"{plan.groups} groups put {per_core} on each ({SPLIT_HEADS_FACTORY}); use an interleaved config (e.g. BFLOAT8_B-L1)"]
    return []


def _op_problems(plan: Plan) -> list[str]:
    found = []
    for name, op in plan.ops.items():
        if isinstance(op.program, MatmulProgram):
            found += _matmul_problems(plan, name, op.program)
        elif isinstance(op.program, LayerNormProgram):
            found += _layernorm_problems(plan, name, op.program)
    found += _softmax_problems(plan, plan.ops["softmax"].program)
    if plan.sharded:
        found += _split_problems(plan)
    return found


def make_plan(device: str | Device, batch: int, config: str | RunConfig = DEFAULT_RUN_CONFIG, shape: EncoderShape = BERT_LARGE) -> Plan:
    """Derive and validate the plan; `PlanError` says why a combination cannot run."""
    device = device if isinstance(device, Device) else get_device(device)
    config = config if isinstance(config, RunConfig) else get_run_config(config)
    if config.torch_only:
        raise PlanError(f"{config.name} is a torch-only reference config; Tenstorrent plans exist for the others")
    require_at_least("batch", batch)
    orientation, groups = choose_layout(device, batch, shape)
    lo, hi = device.batch_range
    if not lo <= batch <= hi:
        raise PlanError(f"{device.title} runs batch {lo}-{hi}, not {batch}")
    plan = Plan(device, batch, config, shape, orientation, groups)
    plan = replace(plan, ops={op.name: OpPlan(op.name, derive_program(plan, op), None) for op in ENCODER})
    plan, placements, usage = _fit_l1(plan)
    plan = replace(plan, ops={n: OpPlan(n, plan.ops[n].program, placements[n], usage[n]) for n in ENCODER_OPS})
    plan = replace(plan, mask_shape=attention_mask_shape(plan))
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
    for i, spec in enumerate(ENCODER, 1):
        op = plan.ops[spec.name]
        program = op.program.describe() if op.program else (DATA_MOVEMENT if spec.kind == DATA_MOVEMENT else "default (interleaved)")
        rows.append((str(i), spec.title, program, op.output.describe(), f"{op.l1_bytes / 1024:.0f} KiB"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    return "\n".join(lines)
