"""L1 accounting: the bytes of each tensor and circular buffer a core holds while an op runs, and fitting the plan
into the card's free L1."""

from __future__ import annotations

from dataclasses import replace

from ..config import BFLOAT8_B, BFLOAT16, DRAM, FLOAT32, L1, SHARDED
from ..ops import BATCHED_MATMUL, ENCODER, ENCODER_OPS, LAYER_INPUT, LAYERNORM, LINEAR, OPS, SOFTMAX
from .derive import k_tiles, largest_divisor, output_elements, output_placement, tiles
from .types import (
    INTERLEAVED, LAYER_INPUT_WRITER, MULTICAST, REUSE, TILE, LayerNormProgram, MatmulProgram, Placement, Plan, SoftmaxProgram,
)

# Bytes per 32x32 tile (tt_metal tile_size): bf16 2 B/value; bfp8 1 B/value + 64 shared exponents.
TILE_BYTES = {FLOAT32: 4096, BFLOAT16: 2048, BFLOAT8_B: 1088}
# Intermediate circular buffers of softmax/layernorm hold Float16_b unless fp32 accumulation is on.
INTERMEDIATE_DTYPE = BFLOAT16


def _bytes(tile_count: int, dtype: str) -> int:
    return tile_count * TILE_BYTES[dtype]


def _tensor_l1(plan: Plan, placement: Placement, rows: int, cols: int) -> int:
    """Per-core L1 a tensor occupies: its shard, its share of the L1 banks (interleaved), or none (DRAM)."""
    if placement.buffer == DRAM:
        return 0
    if placement.layout != INTERLEAVED:
        r, c = placement.shard_shape
        return _bytes(r // TILE * (c // TILE), placement.dtype)
    pages = rows // TILE * (cols // TILE)
    return _bytes(-(-pages // plan.card.cores), placement.dtype)  # round-robin pages over every core's bank


def _intermediate_cb(plan: Plan, prog: MatmulProgram, out_dtype: str, blocks: int) -> int:
    """The buffer the matmul accumulates its partial sums in. With packer_l1_acc (ttnn's default unless the output
    is float32, on the cards that have it) the factories accumulate in L1 once K takes more than two blocks, or,
    multicast with a bias (every linear here), more than one; the partials are then Float16_b (Float32 with fp32
    accumulation), else in the output's format. Partials in the output's format share its buffer; any other format
    gets per_core_M x per_core_N tiles of its own (matmul_multicore_reuse_mcast_2d_program_factory.cpp,
    matmul_multicore_reuse_optimized_program_factory.cpp)."""
    accumulates = plan.card.l1_accumulation and out_dtype != FLOAT32
    l1_acc = accumulates and (blocks > 2 or (prog.kind == MULTICAST and blocks > 1))
    partials = FLOAT32 if plan.fp32_dest_acc else BFLOAT16 if l1_acc else out_dtype
    return 0 if partials == out_dtype else _bytes(prog.per_core_M * prog.per_core_N, partials)


def _matmul_cbs(plan: Plan, prog: MatmulProgram, in0_dtype: str, out: Placement, k_tiles: int, in0_sharded: bool) -> int:
    """Circular buffers the matmul allocates beyond the tensors themselves (sizes as in ttnn's program factories:
    matmul_multicore_reuse_mcast_2d_program_factory.cpp, matmul_multicore_reuse_program_factory.cpp)."""
    weights = plan.config.dtype_of("matmul_weights")
    blocks = k_tiles // prog.in0_block_w
    depth = 2 if blocks > 1 else 1  # double-buffered when K takes more than one block
    out_cb = 0 if out.layout != INTERLEAVED else _bytes(prog.per_core_M * prog.per_core_N, out.dtype)
    out_cb += _intermediate_cb(plan, prog, out.dtype, blocks)
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
    # The layer's input is the previous layer's last output (the first layer's: the embeddings', in its dtype).
    layer_input = replace(placements[LAYER_INPUT_WRITER], dtype=plan.config.dtype_of("qkv_input"))
    placements = {**placements, LAYER_INPUT: layer_input}
    seq_t, hidden_t = plan.shape.seq // TILE, plan.shape.hidden // TILE
    usage = {}
    for op in ENCODER:
        live = set(op.inputs) | set(op.held) | (set() if op.in_place else {op.name})
        total = sum(_tensor_l1(plan, placements[t], *dims[t]) for t in live)
        prog = plan.ops[op.name].program
        if op.kind in (LINEAR, BATCHED_MATMUL):
            source = placements[op.inputs[0]]
            total += _matmul_cbs(plan, prog, source.dtype, placements[op.name], tiles(plan.shape, op.k), source.layout != INTERLEAVED)
        elif op.kind == SOFTMAX:
            total += _softmax_cbs(plan, prog, seq_t)
        elif op.kind == LAYERNORM:
            total += _layernorm_cbs(plan, prog, hidden_t)
        usage[op.name] = total
    return usage


def fit_l1(plan: Plan) -> tuple[Plan, dict[str, Placement], dict[str, int]]:
    """Make the plan fit L1 where it can. In L1 configs, first move the largest L1 outputs to DRAM (the seed does
    this by hand: BFLOAT16-L1 keeps the attention scores and the FF1 output in DRAM); then narrow the K block of
    a matmul that still overflows (the next divisor of the K it holds). Stops when nothing helps any more."""
    buffer = L1 if plan.config.memory in (L1, SHARDED) else DRAM
    placements = {op.name: output_placement(plan, op, buffer) for op in ENCODER}
    dims = output_elements(plan.shape, plan.batch)
    spill_order = [op for op in sorted(ENCODER_OPS, key=lambda op: -dims[op][0] * dims[op][1] * TILE_BYTES[placements[op].dtype])
                   if op != "softmax"]
    while True:
        placements["softmax"] = replace(placements["softmax"], buffer=placements["q_kt"].buffer)  # in place
        usage = l1_per_op(plan, placements)
        over = [op for op in ENCODER_OPS if usage[op] > plan.card.l1_free_bytes]
        if not over:
            return plan, placements, usage
        live = {t for op in over for t in (*OPS[op].inputs, *OPS[op].held, op)}
        live_in_overflow = {LAYER_INPUT_WRITER if t == LAYER_INPUT else t for t in live}
        spill = next((op for op in spill_order if placements[op].buffer == L1 and op in live_in_overflow), None)
        if spill is not None:
            placements[spill] = replace(placements[spill], buffer=DRAM)
            continue
        narrowed = False
        for op in over:
            prog = plan.ops[op].program
            if isinstance(prog, MatmulProgram) and prog.in0_block_w > 1:
                narrower = largest_divisor(k_tiles(plan.shape, OPS[op], prog, plan.groups), prog.in0_block_w - 1)
                plan = replace(plan, ops={**plan.ops, op: replace(plan.ops[op], program=replace(prog, in0_block_w=narrower))})
                narrowed = True
        if not narrowed:
            return plan, placements, usage
