"""The Tensix sharding plan: every encoder op's program config, derived from shapes and the core grid.

The seed parallelises one grid dimension over the batch (one line of cores per sequence) and the other over
`groups` slices of the hidden dimension, each slice holding whole attention heads (QKV weights are interleaved
in `groups` so that a core's QKV output block already is [q | k | v] of its own heads; split-heads, attention
and concat-heads then stay on the core). From that layout every number follows:

    per_core_M     the rows one core owns, in tiles: one sequence (S/32), or its heads' rows in attention
    per_core_N     the output columns one core owns: N/32 / groups, or the whole row in attention
    in0_block_w    the K width a core already holds (its shard width, or all of K for the batched matmuls)
    out_subblock   the largest h x w that divides the block and fits the destination registers, with
                   w == per_core_N or h == 1, and for the batched matmuls h dividing one matrix's rows
                   (ttnn's matmul validation: matmul_device_operation.cpp)
    softmax        block = the core's rows x the whole key length; subblock_w = largest divisor that fits
    layernorm      block = the core's shard; two-stage reduction across the line of cores

and is then validated: tiles divide, subblocks fit the registers, every op's shards plus circular buffers fit
the core's free L1 (buffer sizes from the tile sizes of the run config's dtypes), the grid fits the card.
For Grayskull e150, batch 12, BFLOAT8_B-SHARDED this reproduces the seed's tt/model_config.py numbers
(`bertl11 plan --card e150 --batch 12 --config BFLOAT8_B-SHARDED` prints it).

The parts: `types` (the shape, placements, program configs and `Plan`), `derive` (layout and program configs),
`l1` (bytes per core, fitting L1), `rules` (the plan's arithmetic and ttnn's checks, ported), `format` (as text or data).
"""

from __future__ import annotations

from dataclasses import replace

from ..cards import Card, get_card
from ..config import DEFAULT_RUN_CONFIG, RunConfig, get_run_config
from ..errors import require_at_least
from ..ops import ENCODER, ENCODER_OPS
from .derive import attention_mask_shape, choose_layout, derive_program, interleave_qkv, out_subblock
from .format import format_plan, plan_data
from .l1 import fit_l1
from .rules import problems
from .types import (
    BERT_LARGE, BLOCK_SHARDED, HEIGHT_SHARDED, INTERLEAVED, MULTICAST, REUSE, TILE, EncoderShape, LayerNormProgram,
    MatmulProgram, OpPlan, Placement, Plan, PlanError, Program, SoftmaxProgram,
)

__all__ = [
    "BERT_LARGE", "BLOCK_SHARDED", "HEIGHT_SHARDED", "INTERLEAVED", "MULTICAST", "REUSE", "TILE", "EncoderShape",
    "LayerNormProgram", "MatmulProgram", "OpPlan", "Placement", "Plan", "PlanError", "Program", "SoftmaxProgram",
    "attention_mask_shape", "format_plan", "interleave_qkv", "make_plan", "out_subblock", "plan_data", "problems",
]


def make_plan(card: str | Card, batch: int, config: str | RunConfig = DEFAULT_RUN_CONFIG, shape: EncoderShape = BERT_LARGE) -> Plan:
    """Derive the plan, fit it into L1 and validate it; `PlanError` says why a combination cannot run."""
    card = card if isinstance(card, Card) else get_card(card)
    config = config if isinstance(config, RunConfig) else get_run_config(config)
    if config.torch_only:
        raise PlanError(f"{config.name} is a torch-only reference config; Tenstorrent plans exist for the others")
    require_at_least("batch", batch)
    orientation, groups = choose_layout(card, batch, shape)
    lo, hi = card.batch_range
    if not lo <= batch <= hi:
        raise PlanError(f"{card.title} runs batch {lo}-{hi}, not {batch}")
    plan = Plan(card, batch, config, shape, orientation, groups)
    plan = replace(plan, ops={op.name: OpPlan(op.name, derive_program(plan, op), None) for op in ENCODER})
    plan, placements, usage = fit_l1(plan)
    plan = replace(plan, ops={n: OpPlan(n, plan.ops[n].program, placements[n], usage[n]) for n in ENCODER_OPS})
    plan = replace(plan, mask_shape=attention_mask_shape(plan))
    found = problems(plan)
    if found:
        raise PlanError(f"{card.name} batch {batch} {config.name}: " + "; ".join(found))
    return plan
