"""The plan's vocabulary: the encoder shape it is derived for, where each op's output lives, the program configs
ttnn takes, and the `Plan` that holds them for one card, batch and run config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..cards import COL_MAJOR, DEST_TILES_FP32_ACC, DEST_TILES_HALF_SYNC, Card
from ..config import SHARDED, BertShape, RunConfig
from ..errors import UserError
from ..ops import LAYER_INPUT

TILE = 32

INTERLEAVED, BLOCK_SHARDED, HEIGHT_SHARDED = "INTERLEAVED", "BLOCK_SHARDED", "HEIGHT_SHARDED"
# The op whose output is the next layer's input (the first layer's comes from the embeddings, placed alike).
LAYER_INPUT_WRITER = "ffn_add_layernorm"
MULTICAST, REUSE = "MultiCast", "Reuse"


class PlanError(UserError):
    """A card / batch / config combination the plan refuses, with the reason."""


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

    @property
    def memory(self) -> tuple[str, str, tuple[int, int] | None]:
        """What ttnn's MemoryConfig compares: layout, buffer and shard shape (the plan's grid and orientation are
        the same for every sharded tensor); the dtype is not part of it."""
        return self.layout, self.buffer, self.shard_shape

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

    def ttnn_config(self) -> tuple[str, dict]:
        """ttnn's class name and keyword arguments, in plain data (`backends/ttnn/program_configs.py` builds it)."""
        fields = {
            "compute_with_storage_grid_size": {"CoreCoord": list(self.grid)}, "in0_block_w": self.in0_block_w,
            "out_subblock_h": self.out_subblock_h, "out_subblock_w": self.out_subblock_w,
            "per_core_M": self.per_core_M, "per_core_N": self.per_core_N,
        }
        if self.kind != MULTICAST:
            return "MatmulMultiCoreReuseProgramConfig", fields
        # The seed fuses GELU in its fast approximate form: (UnaryOpType.GELU, True).
        activation = {"UnaryWithParam": ["GELU", 1.0]} if self.fused_activation == "gelu" else None
        return "MatmulMultiCoreReuseMultiCastProgramConfig", {**fields, "transpose_mcast": self.transpose_mcast,
                                                              "fused_activation": activation}

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

    def ttnn_config(self) -> tuple[str, dict]:
        """ttnn's class name and keyword arguments, in plain data."""
        return self.ttnn_class, {"compute_with_storage_grid_size": {"CoreCoord": list(self.grid)}, "subblock_w": self.subblock_w,
                                 "block_h": self.block_h, "block_w": self.block_w}

    def describe(self) -> str:
        return f"Sharded subblock_w={self.subblock_w} block={self.block_h}x{self.block_w}"


@dataclass(frozen=True)
class SoftmaxProgram(_RowBlockProgram):
    """ttnn.SoftmaxShardedMultiCoreProgramConfig."""

    ttnn_class: ClassVar[str] = "SoftmaxShardedMultiCoreProgramConfig"


@dataclass(frozen=True)
class LayerNormProgram(_RowBlockProgram):
    """ttnn.LayerNormShardedMultiCoreProgramConfig."""

    ttnn_class: ClassVar[str] = "LayerNormShardedMultiCoreProgramConfig"
    inplace: bool = True

    def ttnn_config(self) -> tuple[str, dict]:
        name, fields = super().ttnn_config()
        return name, {**fields, "inplace": self.inplace}

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
    card: Card
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

    def placement(self, tensor: str) -> Placement:
        """Where a tensor of the dataflow (`ops.OpSpec.inputs`) lives: its op's output placement."""
        return self.ops[LAYER_INPUT_WRITER if tensor == LAYER_INPUT else tensor].output

    def core(self, batch_row: int, group: int) -> tuple[int, int]:
        """The (x, y) core holding this sequence's hidden slice `group`."""
        return (batch_row, group) if self.orientation == COL_MAJOR else (group, batch_row)

    @property
    def dest_tiles(self) -> int:
        return DEST_TILES_FP32_ACC if self.fp32_dest_acc else DEST_TILES_HALF_SYNC
