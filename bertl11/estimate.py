"""Predicted device time of every op of a Tensix plan: a cost model of the core grid, per architecture, computed
from each op's program config, placement and shapes (`bertl11 estimate`).

One core's work decides an op's time, since every core of a sharded op does the same work at the same time. A core
runs five small processors at once: two move data over the NoC (reader, writer), three drive the compute engines
(unpack, math, pack). So an op takes its start-up cost plus the slowest of its pipelines:

    matmul      K is consumed in blocks of in0_block_w tiles. Per block the cores fetch their operands (the weights
                from DRAM and multicast down the grid, the activations multicast along it, or both from the core's
                own L1) while they compute on the previous block, so the time is the first fetch, then per block the
                slower of fetching and computing. Computing one inner step (one K tile of an h x w subblock) is the
                slower of unpacking h + w tiles from L1 and h x w tile products on the matrix engine (16 cycles each
                per fidelity phase on Wormhole and Blackhole; 36 measured on Grayskull, whose engine does half as
                much per cycle), plus the math thread's fixed cost per step; every subblock of every block adds the
                destination-register hand-off, and the packer writes each block's partial sums back to L1 meanwhile.
                Bias and GELU run on the last block's output tiles.
    softmax, layernorm, GELU, eltwise
                a recipe of FPU and SFPU tile operations per tile (and per row of tiles for the reductions' 1/x and
                sqrt), each at its measured cost per tile; interleaved tensors add their reads and writes over the
                NoC (and DRAM), overlapped with compute.
    data movement (split/concat heads, sharding conversions, embeddings)
                bytes moved per core over the NoC, and the DRAM's bandwidth when the bytes live there.

Constants (`TENSIX`) are per architecture, each with its source in docs/sources.md section 9: published figures
(clock, engine rates, NoC and DRAM per-core rates, Tenstorrent's fitted per-tile costs of FPU/SFPU ops) and, marked
as such, six constants per architecture fitted on tt-metal's published GEMM benchmark (`anchors.py`,
`benchmarks/fit_estimate.py`). Grayskull has no GEMM table; its matmul costs are Tenstorrent's own Grayskull matmul
regression and its data movement takes Wormhole's fitted values (same 32-byte NoC). What the model leaves out is
listed in docs/tenstorrent.md ("What the estimate covers").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .cards import DEST_TILES_HALF_SYNC, Card, get_card
from .config import BFLOAT8_B, BFLOAT16, DRAM, L1, MATH_FIDELITIES, RunConfig, get_run_config, require_math_fidelity
from .errors import UserError
from .ops import BATCHED_MATMUL, DATA_MOVEMENT, ENCODER, LAYER_INPUT, LAYERNORM, LINEAR, OPS, SOFTMAX, op_label
from .plan import BERT_LARGE, INTERLEAVED, MULTICAST, TILE, EncoderShape, MatmulProgram, Placement, Plan, make_plan
from .plan.derive import out_subblock, output_elements, tiles
from .plan.l1 import INTERMEDIATE_DTYPE, TILE_BYTES
from .tt_profile import CORES, FIDELITY, KERNEL_NS, OP_CODE

# Math fidelity: how many passes the matrix engine makes over each product (docs/sources.md section 9), in the
# order `config.MATH_FIDELITIES` names them. A model's ops take theirs from the run config (`RunConfig.compute`).
FIDELITY_PHASES = {name: passes for passes, name in enumerate(MATH_FIDELITIES, 1)}
# One matmul on its own (`estimate_matmul`, the roofline) runs at ttnn's matmul default, as the seed's matmuls do.
DEFAULT_FIDELITY = "LoFi"

# What bounds an op: the engines, the unpackers reading L1 to feed them, DRAM, the NoC, or the fixed cost of starting it.
COMPUTE, L1_PORT, DRAM_BOUND, NOC_BOUND, DISPATCH = "compute", "L1", "DRAM", "NoC", "dispatch"
BOUNDS = (COMPUTE, L1_PORT, DRAM_BOUND, NOC_BOUND, DISPATCH)


@dataclass(frozen=True)
class TileOps:
    """Cycles per 32x32 tile of one FPU or SFPU operation, unpack and pack included, as Tenstorrent's op model
    measured them (tt-budabackend perf_lib/op_model params; binary ops on BFLOAT8_B, twice that on bfloat16)."""

    add: float
    multiply: float
    exp: float  # approximate mode, as the softmax runs it
    reciprocal: float
    sqrt: float
    gelu: float
    reduce: float  # one tile of a row reduction
    copy: float  # unpack + pack, no math (a transpose or a data-format change)


@dataclass(frozen=True)
class Tensix:
    """One architecture's cost constants, in cycles and bytes per cycle of one core.

    matmul_tile_cycles:    matrix-engine cycles per 32x32x32 tile product per fidelity phase
    step_cycles:           math thread's fixed cost per inner step (one K tile of a subblock)       [fitted]
    subblock_cycles:       per subblock per K block: destination registers handed to the packer    [fitted]
    reload_cycles:         per K block after the first, where partial sums are reloaded (no packer L1 accumulation)
    unpack_bytes:          L1 bytes the two unpackers feed the engines per cycle                    [fitted]
    pack_bytes:            bytes the packers write to L1 per cycle
    fetch_bytes, fetch_latency: a K block fetched by a sender core (DRAM or interleaved L1) and multicast [fitted]
    multicast_bytes:       a sharded block multicast from the core that holds it
    read_bytes, write_bytes: one core's reads and writes over the NoC (interleaved tensors)
    noc_latency:           one NoC round trip between cores (a reduction's partial results gathered)
    start_cycles:          fixed cost of an op on the device: launch, circular buffers, first/last tile  [fitted]
    dram_gbps:             the board's DRAM bandwidth, shared by all cores
    op_gap_ns:             between two traced ops (the next op's launch after the last one's end)
    """

    arch: str
    matmul_tile_cycles: float
    step_cycles: float
    subblock_cycles: float
    reload_cycles: float
    unpack_bytes: float
    pack_bytes: float
    fetch_bytes: float
    fetch_latency: float
    multicast_bytes: float
    read_bytes: float
    write_bytes: float
    noc_latency: float
    start_cycles: float
    dram_gbps: float
    op_gap_ns: float
    tile: TileOps


# Per-tile costs of FPU/SFPU operations (docs/sources.md section 9: tt-budabackend params, Grayskull v2 and Wormhole
# v3; Blackhole's file is a copy of Wormhole's).
_GRAYSKULL_TILE = TileOps(add=50.4, multiply=54.8, exp=668.1, reciprocal=905.5, sqrt=159.0, gelu=286.0, reduce=59.0, copy=56.0)
_WORMHOLE_TILE = TileOps(add=49.6, multiply=54.6, exp=812.8, reciprocal=780.8, sqrt=910.1, gelu=270.4, reduce=59.0, copy=56.0)

# Fitted constants: `python benchmarks/fit_estimate.py` reproduces them from the GEMM rows in anchors.py.
# The matrix engine multiplies 8x16 by 16x16 in one cycle, so a 32x32x32 tile product takes (32/8)(32/16)(32/16) = 16
# cycles on Wormhole and Blackhole (Grayskull's engine does half as much per cycle); a block narrower than 8 rows
# still costs a whole feed, which the model charges by rounding every dimension up to whole tiles.
TILE_PRODUCT_CYCLES = (TILE // 8) * (TILE // 16) * (TILE // 16)

_WORMHOLE = Tensix(
    "wormhole_b0", matmul_tile_cycles=TILE_PRODUCT_CYCLES, step_cycles=15.5, subblock_cycles=42.3, reload_cycles=0,
    unpack_bytes=51.5, pack_bytes=64, fetch_bytes=12.5, fetch_latency=2.1, multicast_bytes=15, read_bytes=22,
    write_bytes=21, noc_latency=259, start_cycles=4604, dram_gbps=288, op_gap_ns=3000, tile=_WORMHOLE_TILE,
)
TENSIX: dict[str, Tensix] = {
    t.arch: t
    for t in (
        # Grayskull: Tenstorrent's Grayskull matmul regression (36 cycles per tile product per phase, 56 per
        # subblock, 1321 per reloaded K block: no packer L1 accumulation); its unpackers, like Wormhole's, move up to
        # 80 B/cycle, so Wormhole's fitted rate; data movement and start-up as Wormhole's (the same 32-byte NoC).
        replace(_WORMHOLE, arch="grayskull", matmul_tile_cycles=36, step_cycles=0, subblock_cycles=56, reload_cycles=1321,
                dram_gbps=118, tile=_GRAYSKULL_TILE),
        _WORMHOLE,
        Tensix(
            "blackhole", matmul_tile_cycles=TILE_PRODUCT_CYCLES, step_cycles=9.5, subblock_cycles=23.4, reload_cycles=0,
            unpack_bytes=72.2, pack_bytes=64, fetch_bytes=17.5, fetch_latency=378.2, multicast_bytes=24, read_bytes=33,
            write_bytes=34, noc_latency=403, start_cycles=5852, dram_gbps=512, op_gap_ns=1300, tile=_WORMHOLE_TILE,
        ),
    )
}

# Host time per op when a forward is dispatched op by op (no trace), not overlapped with the device: the seed's
# Grayskull figures, 406 samples/s on the device and 370 end to end at batch 12, leave 2.9 ms per forward for its
# about 280 device ops (docs/sources.md section 9). An assumption for any other host.
HOST_US_PER_OP = round((12 / 370 - 12 / 406) * 1e6 / 280, 1)


def tensix(card: Card) -> Tensix:
    return TENSIX[card.arch]


def phases(fidelity: str) -> int:
    return FIDELITY_PHASES[require_math_fidelity(fidelity)]


@dataclass(frozen=True)
class Cycles:
    """One core's time for an op, what bounds it, and the matrix engine's ideal share of it."""

    total: float
    bound: str
    ideal: float = 0.0  # matrix-engine cycles at the fidelity with nothing else in the way

    @property
    def utilisation(self) -> float:
        return self.ideal / self.total if self.total else 0.0


# ---------------------------------------------------------------- where a matmul operand comes from, per K block

LOCAL, MULTICAST_SHARD, FETCHED, READ = "local", "multicast", "fetched", "read"


@dataclass(frozen=True)
class Operand:
    """A matmul input as one core sees it: its tile size, and how a K block of it arrives (`LOCAL`: already in this
    core's L1; `MULTICAST_SHARD`: multicast from the core whose shard holds it; `FETCHED`: read from DRAM or
    interleaved L1 by a sender core and multicast; `READ`: read over the NoC by this core alone)."""

    dtype: str
    how: str
    dram: bool = False

    @property
    def tile_bytes(self) -> int:
        return TILE_BYTES[self.dtype]


def _block_fetch(t: Tensix, operand: Operand, tiles_per_block: int) -> tuple[float, str]:
    """Cycles to bring one K block of an operand to the cores that need it, and the resource that limits it."""
    size = tiles_per_block * operand.tile_bytes
    where = DRAM_BOUND if operand.dram else NOC_BOUND
    if operand.how == LOCAL:
        return 0.0, NOC_BOUND
    if operand.how == MULTICAST_SHARD:
        return t.fetch_latency + size / t.multicast_bytes, NOC_BOUND
    if operand.how == FETCHED:
        return t.fetch_latency + size / t.fetch_bytes, where
    return t.fetch_latency + size / t.read_bytes, where


def matmul_cycles(t: Tensix, prog: MatmulProgram, k_tiles: int, in0: Operand, in1: Operand, out_dtype: str,
                  fidelity: str, *, out_remote: bool = False, epilogue_per_tile: float = 0.0) -> Cycles:
    """One core of a blocked matmul (ttnn's 2D multicast or batched reuse program): per_core_M x per_core_N output
    tiles, K in blocks of in0_block_w tiles, the operands fetched per block while the previous block computes."""
    m, n, kb = prog.per_core_M, prog.per_core_N, prog.in0_block_w
    h, w = prog.out_subblock_h, prog.out_subblock_w
    blocks = k_tiles // kb
    p = phases(fidelity)
    # One inner step: h in0 tiles and w in1 tiles unpacked, h*w tile products.
    unpack = (h * in0.tile_bytes + w * in1.tile_bytes) / t.unpack_bytes
    products = h * w * t.matmul_tile_cycles * p + t.step_cycles
    steps = (m // h) * (n // w) * kb
    subblocks = (m // h) * (n // w)
    # Every K block packs the block's partial sums (bfloat16 while K is unfinished), overlapped with the math.
    pack = m * n * TILE_BYTES[INTERMEDIATE_DTYPE if blocks > 1 else out_dtype] / t.pack_bytes
    compute = max(steps * max(unpack, products), pack) + subblocks * t.subblock_cycles
    reload = t.reload_cycles  # every K block after the first reloads partial sums (no L1 accumulation)
    (fetch0, bound0), (fetch1, bound1) = _block_fetch(t, in0, m * kb), _block_fetch(t, in1, kb * n)
    fetch = max(fetch0, fetch1)
    last = compute + m * n * epilogue_per_tile
    write = m * n * TILE_BYTES[out_dtype] / t.write_bytes if out_remote else 0.0
    total = t.start_cycles + fetch + (blocks - 1) * (max(compute + reload, fetch)) + max(last, write)
    ideal = m * n * k_tiles * t.matmul_tile_cycles * p
    # The bound: whichever pipeline sets the pace of the K blocks, unless writing the output out takes longer still.
    if fetch > compute + reload:
        bound = bound0 if fetch0 >= fetch1 else bound1
    else:
        bound = L1_PORT if unpack > products else COMPUTE
    if write - last > blocks * max(compute + reload, fetch):
        bound = NOC_BOUND
    if t.start_cycles > total / 2:
        bound = DISPATCH
    return Cycles(total, bound, ideal)


def tile_program_cycles(card: Card, tiles_per_core: float, per_tile: float, rows_per_core: float = 0.0,
                        per_row: float = 0.0, read_bytes: float = 0.0, write_bytes: float = 0.0,
                        dram_bytes: float = 0.0, extra: float = 0.0) -> Cycles:
    """One core of a reader / compute / writer program: the compute recipe per tile and per row of tiles (plus
    `extra` cycles), overlapped with the core's NoC reads and writes and with the DRAM moving `dram_bytes` (the whole
    op's DRAM traffic, shared by all cores)."""
    t = tensix(card)
    compute = tiles_per_core * per_tile + rows_per_core * per_row + extra
    read, write = read_bytes / t.read_bytes, write_bytes / t.write_bytes
    dram = dram_bytes / dram_bytes_per_cycle(card)
    total = t.start_cycles + max(compute, read, write, dram)
    bound = max((compute, COMPUTE), (max(read, write), NOC_BOUND), (dram, DRAM_BOUND))[1]
    if t.start_cycles > total / 2:
        bound = DISPATCH
    return Cycles(total, bound)


def dram_bytes_per_cycle(card: Card) -> float:
    return tensix(card).dram_gbps * 1e3 / card.clock_mhz


# ---------------------------------------------------------------- the ops of a forward, from the plan

UINT32 = "uint32"  # token ids


@dataclass(frozen=True)
class TensorSpec:
    """A tensor as tt-metal's ops report describes it: its shape (W, Z, Y, X), dtype and memory."""

    shape: tuple[int, int, int, int]
    dtype: str
    memory: str  # "L1 BLOCK_SHARDED", "DRAM INTERLEAVED", ...

    @property
    def dram(self) -> bool:
        return self.memory.startswith(DRAM)

    @property
    def bytes(self) -> int:
        """Bytes in tiles of its dtype (what DRAM moves)."""
        *_, y, x = self.shape
        return math.prod(self.shape[:2]) * -(-y // TILE) * -(-x // TILE) * (TILE_BYTES | {UINT32: 4 * TILE * TILE})[self.dtype]


@dataclass(frozen=True)
class OpCost:
    """One device op's prediction: a row of `bertl11 estimate` (and of its CSV, in tt-metal's ops-report names)."""

    op: str  # the bertl11 op it belongs to (`ops.OPS`)
    op_code: str  # tt-metal's OP CODE for the device operation
    ns: float
    bound: str
    utilisation: float  # of the matrix engine (0 for ops that do not use it)
    cores: int
    program: str
    inputs: tuple[TensorSpec, ...]
    output: TensorSpec
    flops: int = 0  # 2 per multiply-add
    fidelity: str | None = None
    layer: int | None = None

    @property
    def label(self) -> str:
        return op_label(self.op)


# tt-metal's OP CODE of each op's device operation: by op kind, and by name for the two data-movement ops (their
# device-operation names in the seed's era; `tt_profile.op_kind` also matches newer versions' longer names).
OP_CODES = {
    LINEAR: "Matmul", BATCHED_MATMUL: "Matmul", SOFTMAX: "Softmax", LAYERNORM: "LayerNorm",
    "split_heads": "SplitFusedQKVAndSplitHeads", "concat_heads": "NlpConcatHeads",
}


def _op_cost(plan: Plan, name: str, op_code: str, cycles: Cycles, cores: int, program: str, inputs, output,
             flops: int = 0, fidelity: str | None = None) -> OpCost:
    return OpCost(name, op_code, cycles.total / plan.card.clock_mhz * 1e3, cycles.bound, cycles.utilisation, cores,
                  program, tuple(inputs), output, flops, fidelity)


def _memory(placement: Placement) -> str:
    return f"{placement.buffer} {placement.layout}"


def _binary(t: Tensix, name: str, dtype: str) -> float:
    """A binary FPU op's cycles per tile: Buda's BFLOAT8_B figure, twice that for 16-bit operands (its df weight)."""
    return getattr(t.tile, name) * (1 if dtype == BFLOAT8_B else 2)


def layer_placements(plan: Plan) -> dict[str, Placement]:
    """Every encoder tensor's placement, the layer's input included (it is the previous layer's last output, held in
    the QKV input's dtype)."""
    placements = {name: op.output for name, op in plan.ops.items()}
    placements[LAYER_INPUT] = replace(placements["ffn_add_layernorm"], dtype=plan.config.dtype_of("qkv_input"))
    return placements


def _tensor(plan: Plan, name: str, placement: Placement) -> TensorSpec:
    rows, cols = (output_elements(plan.shape, plan.batch) | {LAYER_INPUT: (plan.batch * plan.shape.seq, plan.shape.hidden)})[name]
    return TensorSpec((1, 1, rows, cols), placement.dtype, _memory(placement))


def _operand(placement: Placement, sharded_how: str, interleaved_how: str) -> Operand:
    how = interleaved_how if placement.layout == INTERLEAVED else sharded_how
    return Operand(placement.dtype, how, dram=placement.buffer == DRAM)


def _spread(plan: Plan, tile_rows: int) -> tuple[int, int]:
    """(cores, tile rows per core) of an interleaved program: ttnn's default programs split rows of tiles over the
    whole compute grid."""
    cores = min(plan.card.cores, tile_rows)
    return cores, -(-tile_rows // cores)


def predict_op(plan: Plan, name: str) -> OpCost:
    """One encoder op of the plan (`ops.ENCODER`): its predicted device time and what bounds it. A matmul runs at the
    math fidelity its run config gives it (`RunConfig.compute`: the seed's, or --math-fidelity); softmax and
    layernorm are bound by unpack and the SFPU, not by the matrix engine."""
    spec, op, card = OPS[name], plan.ops[name], plan.card
    compute = plan.config.compute(name)
    fidelity = compute.math_fidelity if compute is not None else DEFAULT_FIDELITY
    t, s = tensix(card), plan.shape
    placements = layer_placements(plan)
    out = placements[name]
    inputs = [_tensor(plan, i, placements[i]) for i in spec.inputs]
    output = _tensor(plan, name, out)
    sharded_cores = plan.batch * plan.groups
    seq_t, hidden_t = s.seq // TILE, s.hidden // TILE
    if spec.kind == LINEAR:
        prog = op.program
        k = tiles(s, spec.k)
        epilogue = _binary(t, "add", INTERMEDIATE_DTYPE) + (t.tile.gelu if prog.fused_activation else 0.0)
        cycles = matmul_cycles(
            t, prog, k, _operand(placements[spec.inputs[0]], MULTICAST_SHARD, FETCHED),
            Operand(plan.config.dtype_of("matmul_weights"), FETCHED, dram=True), out.dtype, fidelity,
            out_remote=out.layout == INTERLEAVED, epilogue_per_tile=epilogue,
        )
        rows, cols = output_elements(s, plan.batch)[name]
        weights = TensorSpec((1, 1, k * TILE, cols), plan.config.dtype_of("matmul_weights"), f"{DRAM} {INTERLEAVED}")
        return _op_cost(plan, name, OP_CODES[LINEAR], cycles, sharded_cores, prog.describe(), [*inputs, weights], output,
                        2 * rows * cols * k * TILE, fidelity)
    if spec.kind == BATCHED_MATMUL:
        prog = op.program
        k = tiles(s, spec.k)
        second = _operand(placements["split_heads"], LOCAL, READ)
        cycles = matmul_cycles(t, prog, k, _operand(placements[spec.inputs[0]], LOCAL, READ), second, out.dtype, fidelity,
                               out_remote=out.layout == INTERLEAVED)
        rows, cols = output_elements(s, plan.batch)[name]
        return _op_cost(plan, name, OP_CODES[BATCHED_MATMUL], cycles, sharded_cores, prog.describe(), inputs, output,
                        2 * rows * cols * k * TILE, fidelity)
    if spec.kind == SOFTMAX:
        # scale, add the mask, exp, sum the row; 1/sum per row of tiles; multiply: intermediates in bfloat16.
        per_tile = 2 * _binary(t, "multiply", INTERMEDIATE_DTYPE) + _binary(t, "add", INTERMEDIATE_DTYPE) + t.tile.exp + t.tile.reduce
        if op.program:
            prog = op.program
            cycles = tile_program_cycles(card, prog.block_h * prog.block_w, per_tile, prog.block_h, t.tile.reciprocal)
            return _op_cost(plan, name, OP_CODES[SOFTMAX], cycles, sharded_cores, prog.describe(), inputs, output)
        rows = plan.batch * s.heads * seq_t
        cores, per_core = _spread(plan, rows)
        tile_bytes = seq_t * (TILE_BYTES[out.dtype] + TILE_BYTES[placements["q_kt"].dtype])
        cycles = tile_program_cycles(card, per_core * seq_t, per_tile, per_core, t.tile.reciprocal,
                                     read_bytes=per_core * tile_bytes / 2, write_bytes=per_core * tile_bytes / 2,
                                     dram_bytes=rows * tile_bytes if out.buffer == DRAM else 0.0)
        return _op_cost(plan, name, OP_CODES[SOFTMAX], cycles, cores, "default (interleaved)", inputs, output)
    if spec.kind == LAYERNORM:
        # x + residual, mean, x - mean, square, variance, * 1/sqrt(var + eps), * gamma, + beta (bfloat16 intermediates);
        # per row of tiles: + eps, sqrt, 1/x.
        per_tile = 3 * _binary(t, "add", INTERMEDIATE_DTYPE) + 3 * _binary(t, "multiply", INTERMEDIATE_DTYPE) + 2 * t.tile.reduce
        per_row = _binary(t, "add", INTERMEDIATE_DTYPE) + t.tile.sqrt + t.tile.reciprocal
        if op.program:
            prog = op.program
            # Two-stage reduction over the line of cores: each core finishes the statistics of its share of the rows,
            # partial sums gathered and results sent back, twice (mean, variance).
            cycles = tile_program_cycles(card, prog.block_h * prog.block_w, per_tile, -(-prog.block_h // plan.groups), per_row,
                                         extra=4 * t.noc_latency)
            return _op_cost(plan, name, OP_CODES[LAYERNORM], cycles, sharded_cores, prog.describe(), inputs, output)
        return _interleaved_layernorm(plan, name, plan.batch * seq_t, hidden_t, [placements[i] for i in spec.inputs], out,
                                      inputs, output)
    if name == "split_heads":
        return _split_heads(plan, placements, inputs, output)
    if name == "concat_heads":
        return _concat_heads(plan, placements, inputs, output)
    raise ValueError(f"{name}: no cost model for an op of kind {spec.kind!r}")


def _interleaved_layernorm(plan: Plan, name: str, tile_rows: int, width: int, sources: list[Placement], out: Placement,
                           inputs, output) -> OpCost:
    """ttnn's default layernorm (with a residual): rows of tiles spread over the grid, read and written over the NoC."""
    t = tensix(plan.card)
    per_tile = 3 * _binary(t, "add", INTERMEDIATE_DTYPE) + 3 * _binary(t, "multiply", INTERMEDIATE_DTYPE) + 2 * t.tile.reduce
    per_row = _binary(t, "add", INTERMEDIATE_DTYPE) + t.tile.sqrt + t.tile.reciprocal
    cores, per_core = _spread(plan, tile_rows)
    read = per_core * width * sum(TILE_BYTES[p.dtype] for p in sources)
    write = per_core * width * TILE_BYTES[out.dtype]
    dram = tile_rows * width * (sum(TILE_BYTES[p.dtype] for p in sources if p.buffer == DRAM)
                                + (TILE_BYTES[out.dtype] if out.buffer == DRAM else 0))
    cycles = tile_program_cycles(plan.card, per_core * width, per_tile, per_core, per_row, read, write, dram)
    return _op_cost(plan, name, OP_CODES[LAYERNORM], cycles, cores, "default (interleaved)", inputs, output)


def _moved(plan: Plan, name: str, op_code: str, tiles_in: int, tiles_out: int, source: Placement, out: Placement,
           inputs, output, sharded: bool, transposed: int = 0, program: str = DATA_MOVEMENT) -> OpCost:
    """A data-movement op: `tiles_in` read and `tiles_out` written (per core when `sharded`, else in all and spread
    over the grid by rows), `transposed` of them through the compute engines (a tile transpose)."""
    t = tensix(plan.card)
    if sharded:
        cores, share = plan.batch * plan.groups, 1.0
    else:
        cores, _ = _spread(plan, tiles_out)
        share = 1 / cores
    read, write = tiles_in * share * TILE_BYTES[source.dtype], tiles_out * share * TILE_BYTES[out.dtype]
    dram = (tiles_in * TILE_BYTES[source.dtype] if source.buffer == DRAM else 0) + (tiles_out * TILE_BYTES[out.dtype] if out.buffer == DRAM else 0)
    cycles = tile_program_cycles(plan.card, transposed * share, t.tile.copy, read_bytes=read, write_bytes=write,
                                 dram_bytes=0 if sharded else dram)
    return _op_cost(plan, name, op_code, cycles, cores, program, inputs, output)


def _split_heads(plan: Plan, placements, inputs, output) -> OpCost:
    """Q, K^T, V of each head out of the fused QKV output; K's tiles are transposed on the way."""
    s = plan.shape
    source, out = placements["qkv"], placements["split_heads"]
    seq_t, qkv_t, head_t = s.seq // TILE, s.qkv_width // TILE, s.head_size // TILE
    if source.layout != INTERLEAVED:  # each core splits its own block: its heads' q, k and v
        block = seq_t * qkv_t // plan.groups
        return _moved(plan, "split_heads", OP_CODES["split_heads"], block, block, source, out, inputs, output,
                      sharded=True, transposed=block // 3)
    total = plan.batch * seq_t * qkv_t
    return _moved(plan, "split_heads", "SplitQueryKeyValueAndSplitHeads", total, total, source, out, inputs, output,
                  sharded=False, transposed=plan.batch * s.heads * seq_t * head_t)


def _concat_heads(plan: Plan, placements, inputs, output) -> OpCost:
    s = plan.shape
    source, out = placements["attention_v"], placements["concat_heads"]
    tokens_t, hidden_t = plan.batch * s.seq // TILE, s.hidden // TILE
    if source.layout != INTERLEAVED:
        block = tokens_t * hidden_t // (plan.batch * plan.groups)
        return _moved(plan, "concat_heads", OP_CODES["concat_heads"], block, block, source, out, inputs, output, sharded=True)
    return _moved(plan, "concat_heads", OP_CODES["concat_heads"], tokens_t * hidden_t, tokens_t * hidden_t, source, out,
                  inputs, output, sharded=False)


def _embedding_ops(plan: Plan) -> list[OpCost]:
    """What the embeddings cost on the device (`backends/ttnn/ops.py`): three table lookups (word, token type, position)
    into bfloat16 rows in L1, their sum, a layernorm with the position rows as its residual, then the layer input's
    placement (sharded, or a typecast into the config's dtype)."""
    t, s, card = tensix(plan.card), plan.shape, plan.card
    tokens, tokens_t, hidden_t = plan.batch * s.seq, plan.batch * s.seq // TILE, s.hidden // TILE
    rows = TensorSpec((plan.batch, 1, s.seq, s.hidden), BFLOAT16, f"{L1} {INTERLEAVED}")
    ids = TensorSpec((1, 1, plan.batch, s.seq), UINT32, f"{DRAM} {INTERLEAVED}")
    lookups = []
    cores, _ = _spread(plan, tokens_t * hidden_t)
    for _ in range(3):
        # Each row of the table read from DRAM (2 bytes per value), written as bfloat16 tiles to L1.
        table_bytes = tokens * s.hidden * 2
        cycles = tile_program_cycles(card, tokens_t * hidden_t / cores, t.tile.copy, read_bytes=table_bytes / cores,
                                     write_bytes=table_bytes / cores, dram_bytes=table_bytes)
        lookups.append(_op_cost(plan, "embeddings", "Embeddings", cycles, cores, "row lookup", [ids], rows))
    add_cycles = tile_program_cycles(card, tokens_t * hidden_t / cores, _binary(t, "add", BFLOAT16),
                                     read_bytes=2 * tokens_t * hidden_t / cores * TILE_BYTES[BFLOAT16],
                                     write_bytes=tokens_t * hidden_t / cores * TILE_BYTES[BFLOAT16])
    lookups.append(_op_cost(plan, "embeddings", "BinaryDeviceOperation", add_cycles, cores, "add", [rows, rows], rows))
    interleaved_bf16 = Placement(INTERLEAVED, L1, BFLOAT16)
    lookups.append(_interleaved_layernorm(plan, "embeddings", tokens_t, hidden_t, [interleaved_bf16] * 2, interleaved_bf16,
                                          [rows, rows], rows))
    layer_input = layer_placements(plan)[LAYER_INPUT]
    code = "InterleavedToShardedDeviceOperation" if layer_input.layout != INTERLEAVED else "TypecastDeviceOperation"
    lookups.append(_moved(plan, "embeddings", code, tokens_t * hidden_t, tokens_t * hidden_t, interleaved_bf16, layer_input,
                          [rows], _tensor(plan, LAYER_INPUT, layer_input), sharded=False,
                          transposed=tokens_t * hidden_t, program="to the layer input"))
    return lookups


def _qa_head_ops(plan: Plan) -> list[OpCost]:
    """The QA head: the last layer's output interleaved (sharded configs) and its [hidden, 2] linear with bias, whose
    two output columns fill one tile column, on ttnn's default matmul program (rows of tiles over the grid)."""
    t, s = tensix(plan.card), plan.shape
    tokens_t, hidden_t = plan.batch * s.seq // TILE, s.hidden // TILE
    last = layer_placements(plan)[LAYER_INPUT]
    head_dtype = plan.config.dtype_of("qa_head_weights")
    interleaved = Placement(INTERLEAVED, L1, head_dtype)
    x = _tensor(plan, LAYER_INPUT, interleaved)
    ops = []
    if last.layout != INTERLEAVED:
        ops.append(_moved(plan, "qa_head", "ShardedToInterleavedDeviceOperation", tokens_t * hidden_t, tokens_t * hidden_t,
                          last, interleaved, [_tensor(plan, LAYER_INPUT, last)], x, sharded=False,
                          transposed=tokens_t * hidden_t))
    cores, rows = _spread(plan, tokens_t)
    h, w = out_subblock(rows, 1, plan.dest_tiles)
    prog = MatmulProgram("Reuse", (cores, 1), hidden_t, h, w, rows, 1)  # a few rows per core: all of K in one block
    fidelity = plan.config.compute("qa_head").math_fidelity
    cycles = matmul_cycles(t, prog, hidden_t, Operand(head_dtype, READ), Operand(head_dtype, READ, dram=True), head_dtype,
                           fidelity, out_remote=True, epilogue_per_tile=_binary(t, "add", INTERMEDIATE_DTYPE))
    logits = TensorSpec((plan.batch, 1, s.seq, TILE), head_dtype, f"{L1} {INTERLEAVED}")
    weights = TensorSpec((1, 1, s.hidden, TILE), head_dtype, f"{DRAM} {INTERLEAVED}")
    ops.append(_op_cost(plan, "qa_head", OP_CODES[LINEAR], cycles, cores, "default (interleaved)", [x, weights], logits,
                        2 * plan.batch * s.seq * s.hidden * 2, fidelity))
    return ops


@dataclass(frozen=True)
class Estimate:
    """Every device op of one forward, in order, and what they add up to."""

    plan: Plan
    layers: int
    fidelity: str
    ops: tuple[OpCost, ...]

    @property
    def device_ns(self) -> float:
        return sum(op.ns for op in self.ops)

    @property
    def samples_per_s(self) -> float:
        """On the device alone, as tt-metal's device perf counts it: batch / the sum of kernel durations."""
        return self.plan.batch / (self.device_ns / 1e9)

    @property
    def untraced_ns(self) -> float:
        """Op by op from the host: every op's host dispatch (`HOST_US_PER_OP`) added to the device time."""
        return self.device_ns + len(self.ops) * HOST_US_PER_OP * 1e3

    @property
    def traced_ns(self) -> float:
        """Replayed from a trace, inputs uploaded on the second command queue: only the gaps between ops remain."""
        return self.device_ns + len(self.ops) * tensix(self.plan.card).op_gap_ns

    def by_op(self) -> dict[str, float]:
        """Nanoseconds per bertl11 op (summed over layers), in execution order."""
        totals: dict[str, float] = {}
        for op in self.ops:
            totals[op.op] = totals.get(op.op, 0.0) + op.ns
        return totals


def estimate_model(card: str | Card, batch: int, config: str | RunConfig, shape: EncoderShape = BERT_LARGE,
                   layers: int = 24, fidelity: str | None = None) -> Estimate:
    """The plan of a card, batch and config (`plan.make_plan`, which refuses what cannot run), costed op by op.
    `fidelity`: every matmul at this math fidelity (--math-fidelity); None, the seed's settings."""
    run_config = get_run_config(config) if isinstance(config, str) else config
    plan = make_plan(card, batch, run_config.with_math_fidelity(fidelity or run_config.math_fidelity), shape)
    fidelity = plan.config.compute("qkv").math_fidelity  # the encoder's matmuls all run at one fidelity
    layer = [predict_op(plan, spec.name) for spec in ENCODER]
    ops = [*_embedding_ops(plan)]
    for i in range(layers):
        ops += [replace(op, layer=i) for op in layer]
    ops += _qa_head_ops(plan)
    return Estimate(plan, layers, fidelity, tuple(ops))


# ---------------------------------------------------------------- one matmul, as tt-metal's GEMM benchmark runs it

@dataclass(frozen=True)
class MatmulEstimate:
    """One 2D multicast matmul as tt-metal's GEMM benchmark runs it: in1 interleaved in DRAM; in0 and the output
    block-sharded in L1 where their shards fit (`sharded`), else interleaved in DRAM; each core's output computed in
    `out_blocks` blocks one after another when one block of partial sums does not fit L1."""

    card: Card
    m: int
    k: int
    n: int
    dtype: str
    fidelity: str
    program: MatmulProgram  # of one output block
    sharded: bool
    out_blocks: int
    cycles: Cycles

    @property
    def device_us(self) -> float:
        return self.cycles.total / self.card.clock_mhz

    @property
    def cores(self) -> int:
        return self.program.grid[0] * self.program.grid[1]

    @property
    def utilisation(self) -> float:
        """Ideal matrix-engine cycles on the cores used / predicted cycles (the GEMM report's device utilisation)."""
        return self.cycles.utilisation

    @property
    def tflops(self) -> float:
        return 2 * self.m * self.k * self.n / (self.device_us * 1e-6) / 1e12


def _divisors(n: int, limit: int | None = None) -> list[int]:
    return [d for d in range(1, min(n, limit or n) + 1) if n % d == 0]


def matmul_l1_bytes(prog: MatmulProgram, k_shard: int, dtype: str, sharded: bool) -> int:
    """Per-core L1 of the benchmark's matmul: double-buffered in0 and in1 blocks, the output block, the bfloat16
    partial sums packed into L1 across K blocks when the output is in another format, and the in0 shard if sharded."""
    tile = TILE_BYTES[dtype]
    m, n, kb = prog.per_core_M, prog.per_core_N, prog.in0_block_w
    partials = m * n * TILE_BYTES[BFLOAT16] if dtype != BFLOAT16 else 0
    return (m * k_shard * sharded + 2 * m * kb + 2 * kb * n + m * n) * tile + partials


def matmul_layout(card: Card, m: int, k: int, n: int, dtype: str) -> tuple[MatmulProgram, bool, int]:
    """(program of one output block, sharded, output blocks per core) for any M, K, N that tile: M split over the
    grid's rows, K and N over its columns (as many as divide them), the plan's subblock rule; the first layout that
    fits L1 of: sharded with the widest K block, interleaved with the widest K block, then the output block split
    in 2, 3, ... blocks as square as they come."""
    for name, size in (("M", m), ("K", k), ("N", n)):
        if size < TILE or size % TILE:
            raise UserError(f"--matmul {m}x{k}x{n}: {name} = {size} is not a positive multiple of the {TILE}-wide tile")
    x = max(_divisors(math.gcd(k // TILE, n // TILE), card.grid[0]))
    y = max(_divisors(m // TILE, card.grid[1]))
    per_m, per_n, k_shard = m // TILE // y, n // TILE // x, k // TILE // x
    for sharded, splits in ((True, (1,)), (False, range(1, per_m * per_n + 1))):
        for blocks in splits:
            block_m, block_n = _split(per_m, per_n, blocks)
            if block_m is None:
                continue
            h, w = out_subblock(block_m, block_n, DEST_TILES_HALF_SYNC)
            for kb in reversed(_divisors(k_shard)):
                prog = MatmulProgram(MULTICAST, (x, y), kb, h, w, block_m, block_n)
                if matmul_l1_bytes(prog, k_shard, dtype, sharded) <= card.l1_free_bytes:
                    return prog, sharded, blocks
    raise UserError(f"--matmul {m}x{k}x{n} {dtype} does not fit {card.title}'s L1 in any layout")  # one tile always fits


def _split(per_m: int, per_n: int, blocks: int) -> tuple[int | None, int | None]:
    """A per_m x per_n block cut into `blocks` equal blocks as close to square as they come, or (None, None)."""
    cuts = [(per_m // bm, per_n // (blocks // bm)) for bm in _divisors(blocks)
            if per_m % bm == 0 and per_n % (blocks // bm) == 0]
    return min(cuts, key=lambda mn: max(mn) / min(mn), default=(None, None))


def estimate_matmul(card: str | Card, m: int, k: int, n: int, dtype: str, fidelity: str = DEFAULT_FIDELITY,
                    program: MatmulProgram | None = None) -> MatmulEstimate:
    """One matmul as tt-metal's GEMM benchmark runs it (`program`: the benchmark's own sharded config; else the
    layout is derived, `matmul_layout`)."""
    card = card if isinstance(card, Card) else get_card(card)
    if dtype not in (BFLOAT8_B, BFLOAT16):
        raise UserError(f"dtype {dtype!r}: choose {BFLOAT8_B.upper()} or {BFLOAT16.upper()}")
    phases(fidelity)
    program, sharded, blocks = (program, True, 1) if program else matmul_layout(card, m, k, n, dtype)
    t = tensix(card)
    in0 = Operand(dtype, MULTICAST_SHARD) if sharded else Operand(dtype, FETCHED, dram=True)
    block = matmul_cycles(t, program, k // TILE, in0, Operand(dtype, FETCHED, dram=True), dtype, fidelity,
                          out_remote=not sharded)
    cycles = Cycles(t.start_cycles + blocks * (block.total - t.start_cycles), block.bound, blocks * block.ideal)
    return MatmulEstimate(card, m, k, n, dtype, fidelity, program, sharded, blocks, cycles)


# ---------------------------------------------------------------- as tt-metal's ops report

def _pm_columns(card: Card, op: OpCost) -> dict[str, float]:
    """The report's performance-model columns, as tt-metal computes them (docs/sources.md section 9): ideal compute
    from the matmul's multiply-adds over the whole device grid (4096 per core per cycle at LoFi, times the fidelity),
    1 cycle for ops without a model, at 1 GHz on Wormhole and 1.2 GHz elsewhere; ideal bandwidth from the slowest
    DRAM tensor at 258 GB/s (Wormhole) or 96 GB/s, 1 ns for an L1 tensor; ideal = the larger."""
    wormhole = card.arch == "wormhole_b0"
    clock_ghz = 1.0 if wormhole else 1.2
    cycles = math.ceil(op.flops / (card.cores * 4096) * phases(op.fidelity)) if op.flops else 1
    compute = math.ceil(cycles / clock_ghz)
    dram_gbps = 6 * 2 * 21.5 if wormhole else 96.0
    bandwidth = max([1.0] + [t.bytes / dram_gbps / 2**30 * 1e9 for t in (*op.inputs, op.output) if t.dram])
    return {"PM IDEAL [ns]": round(max(compute, bandwidth)), "PM COMPUTE [ns]": compute,
            "PM BANDWIDTH [ns]": round(bandwidth), "PM FPU UTIL (%)": round(100 * compute / op.ns, 3)}


def _tensor_columns(prefix: str, tensor: TensorSpec | None) -> dict[str, object]:
    names = ("W", "Z", "Y", "X")
    if tensor is None:
        return {**{f"{prefix}_{n}": "" for n in names}, f"{prefix}_DATATYPE": "", f"{prefix}_MEMORY": ""}
    return {**{f"{prefix}_{n}": v for n, v in zip(names, tensor.shape)}, f"{prefix}_DATATYPE": tensor.dtype.upper(),
            f"{prefix}_MEMORY": tensor.memory.replace(" ", "_")}


def report_rows(estimate: Estimate) -> list[dict]:
    """One row per device op, columns named as tt-metal's device profiler ops report names them (so
    `tt_profile.compare_reports` puts a card's measured report beside it), then bertl11's own columns."""
    inputs = max(len(op.inputs) for op in estimate.ops)
    rows = []
    for count, op in enumerate(estimate.ops, 1):
        row = {OP_CODE: op.op_code, "OP TYPE": "tt_dnn_device", "GLOBAL CALL COUNT": count, "ATTRIBUTES": op.program,
               FIDELITY: op.fidelity or "", CORES: op.cores, KERNEL_NS: round(op.ns)}
        for i in range(inputs):
            row |= _tensor_columns(f"INPUT_{i}", op.inputs[i] if i < len(op.inputs) else None)
        row |= _tensor_columns("OUTPUT_0", op.output)
        row |= _pm_columns(estimate.plan.card, op)
        row |= {"BERTL11 LAYER": "" if op.layer is None else op.layer, "BERTL11 OP": op.label, "BERTL11 BOUND": op.bound,
                "BERTL11 MATRIX ENGINE UTIL (%)": round(100 * op.utilisation, 1)}
        rows.append(row)
    return rows


def roofs(plan: Plan, fidelity: str = DEFAULT_FIDELITY) -> tuple[float, dict[str, float]]:
    """The roofline of a plan's grid: the matrix engines' peak TFLOP/s at `fidelity` on the plan's cores, and the
    bandwidths (GB/s) that feed them: the board's DRAM and the unpackers reading L1 on every core."""
    t, cores, clock = tensix(plan.card), plan.batch * plan.groups, plan.card.clock_mhz * 1e6
    peak = cores * 2 * TILE**3 / (t.matmul_tile_cycles * phases(fidelity)) * clock / 1e12
    return peak, {"DRAM": t.dram_gbps, "L1 (unpackers)": cores * t.unpack_bytes * clock / 1e9}
