"""The grid emulator: a backend that executes a sharding plan core by core in torch, driven by `model.py`,
to show the plan computes the same encoder as dense torch.

Each core of the plan's grid computes exactly what its program config gives it: its per_core_M x per_core_N
output block of a matmul, looping K in in0_block_w steps (reading each K block from the core whose shard
holds it when the input is sharded) and writing the block subblock by subblock; softmax over the rows of
its shard; layernorm over its block, with the row statistics gathered from the other cores of its grid
line. Every output tile must be written exactly once (`EmulationError` otherwise), and a K remainder that
in0_block_w does not reach is never read, so a wrong per-core block, subblock or K step shows up either as
an error or as a wrong number. The arithmetic is the plan config's (`fpu.py`, through the torch backend's
helpers: matmul operands cut to their fidelity's bits, the fast GELU, the softmax's approximate exp and
reciprocal) in float64 without the storage dtypes' roundings: sums of cut operands are then the same in any
order, so the grid must equal dense torch with the same arithmetic even through the approximations' steps.
Embeddings, the mask and the QA head are not part of the plan and run as the torch backend runs them.

Only the cores of the `rows` batch rows do the arithmetic (all of them by default; the other sequences'
outputs are left undefined); the rest still do the bookkeeping, so coverage is checked for the whole grid
while a test can afford BERT-large shapes. Cores on one line multicast the same in0 blocks, so their
K-blocked product is computed once per line and each core takes its columns.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..cards import COL_MAJOR
from ..config import BertShape, get_run_config
from ..plan import TILE, LayerNormProgram, MatmulProgram, Plan, SoftmaxProgram, interleave_qkv
from .torch import TorchOps


# What the emulator computes in (`TorchOps(dtype=...)`): see the module docstring.
EMULATION_DTYPE = torch.float64


class EmulationError(AssertionError):
    """The plan does not map the computation onto the grid: a block outside the tensor, a tile written
    twice or never, a K block straddling two cores' shards."""


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """[B, S, H] -> [B * S, H]: the 2D matrix the grid programs tile."""
    return x.reshape(-1, x.shape[-1])


class GridEmulator(TorchOps):
    """`Backend` running the encoder ops on the plan's core grid: `rows` are the sequences whose cores do the
    arithmetic (all by default). The plan is fixed, so a batch must have the plan's batch and sequence length."""

    def __init__(self, plan: Plan, shape: BertShape, rows: list[int] | None = None):
        super().__init__(shape, get_run_config("FLOAT32"), arithmetic=plan.config, dtype=EMULATION_DTYPE)
        self.plan = plan
        self.rows = set(range(plan.batch) if rows is None else rows)
        self.cores = [(b, g) for b in range(plan.batch) for g in range(plan.groups)]
        gx, gy = plan.grid
        for core in self.cores:
            x, y = plan.core(*core)
            if not (x < gx <= plan.card.grid[0] and y < gy <= plan.card.grid[1]):
                raise EmulationError(f"core ({x}, {y}) lies outside the {gx}x{gy} grid of {plan.card.title}")

    # ------------------------------------------------------------------ the Backend protocol

    def describe(self) -> str:
        return f"grid emulation of {self.plan.card.title}, batch {self.plan.batch}, {self.plan.config.name} arithmetic (float64)"

    def prepare(self, flat: dict[str, torch.Tensor]):
        """QKV weights interleaved in the plan's groups, as the TT backend lays them out."""
        groups = self.plan.qkv_groups
        return super().prepare({name: interleave_qkv(t, groups) if name.endswith(("qkv.weight", "qkv.bias")) else t
                                for name, t in flat.items()})

    def begin_batch(self, batch: int, seq: int) -> None:
        if (batch, seq) != (self.plan.batch, self.plan.shape.seq):
            raise EmulationError(f"the plan is for batch {self.plan.batch}, sequence {self.plan.shape.seq}; got {batch}, {seq}")

    def _program(self, op: str):
        return self.plan.ops[op].program

    def _linear_op(self, op: str, x: torch.Tensor, p) -> torch.Tensor:
        out = self._grid_linear(op, _tokens(x), p.weight, p.bias, self._program(op), self.plan.sharded)
        return out.view(*x.shape[:-1], -1)

    def qkv(self, x, p):
        return self._linear_op("qkv", x, p)

    def split_heads(self, qkv, num_heads):
        # With interleaved weights a core's QKV block is [q | k | v] of its own heads.
        batch, seq, width = qkv.shape
        groups = self.plan.qkv_groups
        head_size = width // (3 * num_heads)
        parts = qkv.view(batch, seq, groups, 3, num_heads // groups, head_size).permute(3, 0, 2, 4, 1, 5)
        q, k, v = parts.reshape(3, batch, num_heads, seq, head_size)
        return q, k.transpose(-1, -2), v

    def q_kt(self, q, k_t):
        batch, heads, seq, head_size = q.shape
        scores = self._grid_batched_matmul("q_kt", q.reshape(-1, seq, head_size), k_t.reshape(-1, head_size, seq), self._program("q_kt"))
        return scores.view(batch, heads, seq, seq)

    def softmax(self, scores, mask, scale):
        batch, heads, seq, keys = scores.shape
        probs = self._grid_softmax(scores.reshape(-1, keys), mask.reshape(batch, keys), scale, self._program("softmax"), heads * seq)
        return probs.view(batch, heads, seq, keys)

    def attention_v(self, probs, v):
        batch, heads, seq, keys = probs.shape
        context = self._grid_batched_matmul("attention_v", probs.reshape(-1, seq, keys), v.reshape(-1, keys, v.shape[-1]),
                                            self._program("attention_v"))
        return context.view(batch, heads, seq, -1)

    def self_output(self, x, p):
        return self._linear_op("self_output", x, p)

    def _add_layernorm_op(self, op: str, x, residual, p, eps):
        return self._grid_add_layernorm(op, _tokens(x), _tokens(residual), p, eps, self._program(op)).view(x.shape)

    def attention_add_layernorm(self, x, residual, p, eps):
        return self._add_layernorm_op("attention_add_layernorm", x, residual, p, eps)

    def ff1_gelu(self, x, p):
        return self._linear_op("ff1_gelu", x, p)  # GELU only where the program fuses it

    def ff2(self, x, p):
        return self._linear_op("ff2", x, p)

    def ffn_add_layernorm(self, x, residual, p, eps):
        return self._add_layernorm_op("ffn_add_layernorm", x, residual, p, eps)

    # ------------------------------------------------------------------ helpers

    def _block_index(self, b: int, g: int, transpose: bool) -> tuple[int, int]:
        """(block row, block column) a 2D program gives the core holding (b, g): y, x, or x, y when transposed."""
        x, y = self.plan.core(b, g)
        return (x, y) if transpose else (y, x)

    def _linear_index(self, b: int, g: int) -> int:
        """The core's position in shard order (what a height-sharded or batched program enumerates)."""
        x, y = self.plan.core(b, g)
        gx, gy = self.plan.grid
        return x * gy + y if self.plan.orientation == COL_MAJOR else y * gx + x

    @staticmethod
    def _check_coverage(name: str, writes: torch.Tensor) -> None:
        bad = int((writes != 1).sum())
        if bad:
            raise EmulationError(f"{name}: {bad} of {writes.numel()} output tiles are written {sorted(set(writes.flatten().tolist()) - {1})} times")

    @staticmethod
    def _rows(start_tile: int, tiles: int, limit: int, name: str) -> slice:
        start, stop = start_tile * TILE, (start_tile + tiles) * TILE
        if stop > limit:
            raise EmulationError(f"{name}: a core's block [{start}, {stop}) runs past the tensor's {limit}")
        return slice(start, stop)

    # ------------------------------------------------------------------ the programs, core by core

    def _grid_linear(self, name: str, a: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, prog: MatmulProgram, in0_sharded: bool):
        """2D multicast matmul: [M, K] @ [K, N] + bias, each core one block, K in in0_block_w steps."""
        m, k = a.shape
        n = weight.shape[1]
        out = torch.empty(m, n, dtype=self.dtype)
        writes = torch.zeros(m // TILE, n // TILE, dtype=torch.int32)
        k_tiles, bw = k // TILE, prog.in0_block_w
        shard_k = k_tiles // self.plan.groups
        steps = k_tiles // bw  # the hardware's num_blocks = K / in0_block_w: a remainder is never read
        if in0_sharded:
            for step in range(steps):
                first = step * bw
                if first // shard_k != (first + bw - 1) // shard_k:
                    raise EmulationError(f"{name}: K block {step} (tiles {first}-{first + bw - 1}) straddles two cores' shards of {shard_k} tiles")
        covered = slice(0, steps * bw * TILE)
        line_products = {}  # cores sharing rows multicast the same in0 blocks: one product per line of cores
        for b, g in self.cores:
            i, j = self._block_index(b, g, prog.transpose_mcast)
            rows = self._rows(i * prog.per_core_M, prog.per_core_M, m, name)
            cols = self._rows(j * prog.per_core_N, prog.per_core_N, n, name)
            if b not in self.rows:
                self._write_subblocks(writes, None, None, rows, cols, prog)
                continue
            if rows.start not in line_products:
                line_products[rows.start] = self._product(name, a[rows, covered], weight[covered])
            acc = self._finish_linear(name, line_products[rows.start][:, cols], bias[cols], prog.fused_activation)
            self._write_subblocks(writes, out, acc, rows, cols, prog)
        self._check_coverage(name, writes)
        return out

    @staticmethod
    def _write_subblocks(writes, out, acc, rows, cols, prog: MatmulProgram) -> None:
        """Write a core's block subblock by subblock (counting the tiles each subblock covers)."""
        h, w = prog.out_subblock_h, prog.out_subblock_w
        r0, c0 = rows.start // TILE, cols.start // TILE
        for r in range(prog.per_core_M // h):
            for c in range(prog.per_core_N // w):
                writes[r0 + r * h:r0 + (r + 1) * h, c0 + c * w:c0 + (c + 1) * w] += 1
                if out is not None:
                    sub_r, sub_c = slice(r * h * TILE, (r + 1) * h * TILE), slice(c * w * TILE, (c + 1) * w * TILE)
                    out[rows.start + sub_r.start:rows.start + sub_r.stop, cols.start + sub_c.start:cols.start + sub_c.stop] = acc[sub_r, sub_c]

    def _grid_batched_matmul(self, name: str, a: torch.Tensor, b_mat: torch.Tensor, prog: MatmulProgram):
        """Reuse program over [heads, M, K] @ [heads, K, N]: the output folded to [heads * M, N], each core
        per_core_M rows (several heads) by per_core_N columns, K in in0_block_w steps."""
        heads, m, k = a.shape
        n = b_mat.shape[-1]
        out = torch.empty(heads * m, n, dtype=self.dtype)
        writes = torch.zeros(heads * m // TILE, n // TILE, dtype=torch.int32)
        n_blocks = max(1, n // TILE // prog.per_core_N)
        k_tiles, bw = k // TILE, prog.in0_block_w
        for b, g in self.cores:
            index = self._linear_index(b, g)
            i, j = divmod(index, n_blocks)
            rows = self._rows(i * prog.per_core_M, prog.per_core_M, heads * m, name)
            cols = self._rows(j * prog.per_core_N, prog.per_core_N, n, name)
            if b not in self.rows:
                self._write_subblocks(writes, None, None, rows, cols, prog)
                continue
            acc = torch.zeros(rows.stop - rows.start, cols.stop - cols.start, dtype=self.dtype)
            row = rows.start
            while row < rows.stop:  # the core's rows, one head's matrix at a time
                head, offset = divmod(row, m)
                span = min(m - offset, rows.stop - row)
                for step in range(k_tiles // bw):
                    ks = slice(step * bw * TILE, (step + 1) * bw * TILE)
                    acc[row - rows.start:row - rows.start + span] += self._product(name, a[head, offset:offset + span, ks], b_mat[head, ks, cols])
                row += span
            self._write_subblocks(writes, out, self._dst(name, acc), rows, cols, prog)
        self._check_coverage(name, writes)
        return out

    def _row_chunks(self, total_rows: int):
        """Default (interleaved) programs: tile rows split evenly over the cores, in shard order. Yields
        (whether the rows hold data of an emulated sequence, rows)."""
        tiles = total_rows // TILE
        per_core = -(-tiles // len(self.cores))
        rows_per_batch = total_rows // self.plan.batch
        for b, g in self.cores:
            start = self._linear_index(b, g) * per_core
            if start < tiles:
                rows = slice(start * TILE, min(tiles, start + per_core) * TILE)
                batches = range(rows.start // rows_per_batch, (rows.stop - 1) // rows_per_batch + 1)
                yield any(batch in self.rows for batch in batches), rows

    def _grid_softmax(self, scores: torch.Tensor, mask: torch.Tensor, scale: float, prog: SoftmaxProgram | None, rows_per_batch: int):
        """Rows of softmax(scores * scale + mask); the sharded program does block_h x block_w tiles per core,
        exponentials subblock_w tiles at a time."""
        out = torch.empty_like(scores)
        writes = torch.zeros(scores.shape[0] // TILE, scores.shape[1] // TILE, dtype=torch.int32)
        if prog is None:
            blocks = ((emulated, rows, slice(0, scores.shape[1]), scores.shape[1] // TILE) for emulated, rows in self._row_chunks(scores.shape[0]))
        else:
            blocks = (
                (b in self.rows, self._rows(self._linear_index(b, g) * prog.block_h, prog.block_h, scores.shape[0], "softmax"),
                 slice(0, prog.block_w * TILE), prog.subblock_w)
                for b, g in self.cores
            )
        for emulated, rows, cols, sub in blocks:
            writes[rows.start // TILE:rows.stop // TILE, cols.start // TILE:cols.stop // TILE] += 1
            if not emulated:
                continue
            x = self._softmax_input(scores[rows, cols], mask[torch.arange(rows.start, rows.stop) // rows_per_batch][:, cols], scale)
            exps = torch.full_like(x, math.nan)
            for c in range(x.shape[1] // (sub * TILE)):
                part = slice(c * sub * TILE, (c + 1) * sub * TILE)
                exps[:, part] = self._exp(x[:, part])
            out[rows, cols] = self._normalize(exps)
        self._check_coverage("softmax", writes)
        return out

    def _grid_add_layernorm(self, name: str, x: torch.Tensor, residual: torch.Tensor, p, eps: float, prog: LayerNormProgram | None):
        """layernorm(x + residual). Sharded: each core reduces its block (subblock_w tiles at a time), the line
        of cores sharing the rows combines the partial sums (mean first, then the centred squares)."""
        total = x + residual
        out = torch.empty_like(total)
        writes = torch.zeros(total.shape[0] // TILE, total.shape[1] // TILE, dtype=torch.int32)
        if prog is None:
            for emulated, rows in self._row_chunks(total.shape[0]):
                writes[rows.start // TILE:rows.stop // TILE] += 1
                if emulated:
                    out[rows] = F.layer_norm(total[rows], (total.shape[1],), p.weight, p.bias, eps)
            self._check_coverage(name, writes)
            return out
        blocks = {}
        for b, g in self.cores:
            i, j = self._block_index(b, g, self.plan.orientation == COL_MAJOR)
            rows = self._rows(i * prog.block_h, prog.block_h, total.shape[0], name)
            cols = self._rows(j * prog.block_w, prog.block_w, total.shape[1], name)
            writes[rows.start // TILE:rows.stop // TILE, cols.start // TILE:cols.stop // TILE] += 1
            blocks.setdefault(rows.start, []).append((b, rows, cols))
        self._check_coverage(name, writes)
        width = total.shape[1]
        sub = prog.subblock_w * TILE

        def partial(block, fn):
            return sum(fn(block[:, c * sub:(c + 1) * sub]).sum(dim=-1, keepdim=True) for c in range(block.shape[1] // sub))

        for line in blocks.values():
            if line[0][0] not in self.rows:
                continue
            mean = sum(partial(total[rows, cols], lambda t: t) for _, rows, cols in line) / width
            var = sum(partial(total[rows, cols] - mean, torch.square) for _, rows, cols in line) / width
            for _, rows, cols in line:
                out[rows, cols] = (total[rows, cols] - mean) * torch.rsqrt(var + eps) * p.weight[cols] + p.bias[cols]
        return out
