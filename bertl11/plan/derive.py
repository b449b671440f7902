"""Deriving the plan from shapes and the core grid: the layout (orientation and hidden groups), each op's program
config (blocks, subblocks, K steps) and where its output is placed."""

from __future__ import annotations

import math

from ..cards import COL_MAJOR, Card
from ..config import L1
from ..ops import BATCHED_MATMUL, DATA_MOVEMENT, ENCODER, LAYERNORM, LINEAR, SOFTMAX, OpSpec
from .types import (
    BLOCK_SHARDED, HEIGHT_SHARDED, INTERLEAVED, MULTICAST, REUSE, TILE, EncoderShape, LayerNormProgram, MatmulProgram,
    Placement, Plan, PlanError, Program, SoftmaxProgram,
)


def largest_divisor(n: int, limit: int) -> int:
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def out_subblock(per_core_M: int, per_core_N: int, dest_tiles: int, matrix_rows: int | None = None) -> tuple[int, int]:
    """Largest h x w dividing the block within the registers, with w == per_core_N or h == 1; ties go wide.
    matrix_rows: for a batched matmul, the rows of one matrix of the batch in tiles, which h must divide too
    (ttnn's Reuse program steps through each matrix of the batch subblock by subblock)."""
    height = per_core_M if matrix_rows is None else math.gcd(per_core_M, matrix_rows)
    best = (0, 0, 0)
    for w in range(1, min(per_core_N, dest_tiles) + 1):
        if per_core_N % w:
            continue
        h_limit = dest_tiles // w if w == per_core_N else 1
        h = largest_divisor(height, h_limit)
        best = max(best, (h * w, w, h))
    return best[2], best[1]


def hidden_groups(shape: EncoderShape, room: int) -> int:
    """The most hidden slices that fit `room` cores and keep whole heads on a core."""
    hidden_tiles = shape.hidden // TILE
    for g in range(min(room, shape.heads), 0, -1):
        if shape.heads % g == 0 and hidden_tiles % g == 0:
            return g
    return 1


def choose_layout(card: Card, batch: int, shape: EncoderShape) -> tuple[str, int]:
    """(orientation, groups): the card's preferred orientation if a line of `batch` cores fits along its batch
    axis with the full number of hidden groups across, else the other orientation (as the seed tries both)."""
    x, y = card.grid
    full = hidden_groups(shape, max(x, y))
    for orientation in card.orientations:
        batch_room, group_room = (x, y) if orientation == COL_MAJOR else (y, x)
        if batch <= batch_room and hidden_groups(shape, group_room) == full:
            return orientation, full
    raise PlanError(
        f"batch {batch} needs {batch}x{full} cores (a line of {full} hidden groups per sequence); {card.title}'s compute grid "
        f"is {x}x{y}, so it runs batch {card.batch_range[0]}-{card.batch_range[1]}"
    )


def _matmul(kind, grid, orientation, m_tiles, n_tiles, k_block, dest, activation=None, matrix_rows=None) -> MatmulProgram:
    h, w = out_subblock(m_tiles, n_tiles, dest, matrix_rows)
    return MatmulProgram(kind, grid, k_block, h, w, m_tiles, n_tiles, kind == MULTICAST and orientation == COL_MAJOR, activation)


def tiles(shape: EncoderShape, dimension: str) -> int:
    """A named dimension of one sequence (`EncoderShape.dims`), in tiles."""
    return shape.dims(1)[dimension] // TILE


def k_tiles(shape: EncoderShape, op: OpSpec, prog: MatmulProgram, groups: int) -> int:
    """The K a core holds for a matmul, in tiles: its shard width (multicast) or the whole K (batched)."""
    k = tiles(shape, op.k)
    return k // groups if prog.kind == MULTICAST else k


def derive_program(plan: Plan, op: OpSpec) -> Program:
    s = plan.shape
    g, grid, dest, orient = plan.groups, plan.grid, plan.dest_tiles, plan.orientation
    seq_t, hidden_t = s.seq // TILE, s.hidden // TILE
    heads_per_core = s.heads // g
    if op.kind == LINEAR:
        # Rows = one sequence per line of cores, columns = N / groups; K block = the shard width.
        return _matmul(MULTICAST, grid, orient, seq_t, tiles(s, op.columns) // g, tiles(s, op.k) // g, dest, op.activation)
    if op.kind == BATCHED_MATMUL:
        # Attention: each core owns its heads' rows; K is the whole head (Q.K^T) or the whole sequence (.V).
        return _matmul(REUSE, grid, orient, heads_per_core * seq_t, tiles(s, op.columns), tiles(s, op.k), dest, matrix_rows=seq_t)
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


def output_placement(plan: Plan, op: OpSpec, buffer: str) -> Placement:
    """Where an op writes its output: interleaved in `buffer`, or sharded in L1 over the plan's cores."""
    dtype = plan.config.dtype_of(op.output)
    if not plan.sharded:
        return Placement(INTERLEAVED, buffer, dtype)
    rows, cols = output_elements(plan.shape, plan.batch)[op.name]
    cores = plan.batch * plan.groups
    if op.per_head:  # attention: whole rows, split by heads
        return Placement(HEIGHT_SHARDED, L1, dtype, (rows // cores, cols))
    return Placement(BLOCK_SHARDED, L1, dtype, (rows // plan.batch, cols // plan.groups))


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
