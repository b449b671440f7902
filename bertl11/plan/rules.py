"""The rules a plan must keep: its own arithmetic (whole tiles, subblocks in the registers, buffers in L1) and the
checks ttnn's device operations make before they accept a program config, ported."""

from __future__ import annotations

from ..cards import COL_MAJOR
from ..ops import OPS
from .derive import k_tiles, output_elements, tiles
from .types import BLOCK_SHARDED, MULTICAST, TILE, LayerNormProgram, MatmulProgram, Placement, Plan, SoftmaxProgram


def problems(plan: Plan) -> list[str]:
    """Every reason this plan cannot run, empty when it can: the plan's own arithmetic, then the checks ttnn's
    device operations make before they accept a program config (`_op_problems`)."""
    found = []
    s, card = plan.shape, plan.card
    x, y = plan.grid
    if x > card.grid[0] or y > card.grid[1]:
        found.append(f"grid {x}x{y} exceeds {card.title}'s compute grid {card.grid[0]}x{card.grid[1]}")
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
            shard_k = k_tiles(s, OPS[name], prog, plan.groups)
            if shard_k % prog.in0_block_w:
                found.append(f"{name}: in0_block_w {prog.in0_block_w} does not divide the {shard_k}-tile K a core holds")
        elif isinstance(prog, (SoftmaxProgram, LayerNormProgram)):
            if prog.block_w % prog.subblock_w or prog.subblock_w > plan.dest_tiles:
                found.append(f"{name}: subblock_w {prog.subblock_w} must divide block_w {prog.block_w} and fit {plan.dest_tiles} registers")
        if op.l1_bytes > card.l1_free_bytes:
            found.append(
                f"{name}: needs {op.l1_bytes / 1024:.0f} KiB of L1 per core, {card.title} has {card.l1_free_bytes / 1024:.0f} KiB free"
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
    source = plan.placement(spec.inputs[0])
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
    n_tiles, m_tiles = tiles(s, spec.columns), s.seq // TILE
    total_m = plan.batch * s.heads * m_tiles
    if prog.per_core_N != n_tiles:
        found.append(f"{name}: per_core_N {prog.per_core_N} must equal N = {n_tiles} tiles ({MATMUL_VALIDATION})")
    if (prog.per_core_M % m_tiles or total_m % prog.per_core_M) if prog.per_core_M > m_tiles else m_tiles % prog.per_core_M:
        found.append(f"{name}: per_core_M {prog.per_core_M} must divide, or be a multiple of, M = {m_tiles} tiles "
                     f"and divide the {total_m}-tile total ({MATMUL_VALIDATION})")
    # Both operands are batched (B x heads matrices), so the program steps through each matrix subblock by subblock.
    if m_tiles % prog.out_subblock_h:
        found.append(f"{name}: out_subblock_h ({prog.out_subblock_h}) needs to divide M ({m_tiles}) evenly, the rows of one "
                     f"matrix of the batch in tiles ({MATMUL_VALIDATION})")
    if plan.sharded:
        shard_rows, shard_cols = _shard_tiles(source)
        if spec.inputs[0] == "split_heads":  # its placement stacks a core's q, k and v; the matmul reads q
            shard_rows //= 3
        k_tiles = tiles(s, spec.k)
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


def _residual_problems(plan: Plan, name: str) -> list[str]:
    """A sharded add+layernorm reads its residual (`residual_input_tensor`: the linear before it) beside its input
    (the layer's input, written over in place): both sharded alike, the same memory config."""
    residual, layer_input = OPS[name].inputs
    b, a = plan.placement(residual), plan.placement(layer_input)
    if b.memory != a.memory:
        return [f"{name}: its residual ({residual}, {b.describe()}) must have the same memory config as its input "
                f"({a.describe()}): sharded with the same shard spec ({LAYERNORM_VALIDATION})"]
    return []


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
            found += _layernorm_problems(plan, name, op.program) + _residual_problems(plan, name)
    found += _softmax_problems(plan, plan.ops["softmax"].program)
    if plan.sharded:
        found += _split_problems(plan)
    return found
