"""The plan as text: the layout, then one line per op with its program config, compute kernel settings, output
placement and L1 per core (`bertl11 plan`)."""

from __future__ import annotations

from ..cards import COL_MAJOR
from ..ops import DATA_MOVEMENT, ENCODER
from .types import Plan


def format_plan(plan: Plan) -> str:
    card = plan.card
    x, y = plan.grid
    lines = [
        f"{card.title}, batch {plan.batch}, {plan.config.name}, seq {plan.shape.seq} hidden {plan.shape.hidden}",
        f"grid {x}x{y} of {card.grid[0]}x{card.grid[1]} ({plan.orientation}: batch along {'x' if plan.orientation == COL_MAJOR else 'y'}, "
        f"{plan.groups} hidden groups of {plan.shape.heads // plan.groups} heads), QKV weights interleaved in {plan.qkv_groups}",
        f"L1 per core: {card.l1_bytes // 1024} KiB, {card.l1_free_bytes // 1024} KiB free for buffers",
        "",
    ]
    rows = [("#", "op", "program config", "compute", "output", "L1/core")]
    for i, spec in enumerate(ENCODER, 1):
        op = plan.ops[spec.name]
        program = op.program.describe() if op.program else (DATA_MOVEMENT if spec.kind == DATA_MOVEMENT else "default (interleaved)")
        compute = plan.config.compute(spec.name)
        rows.append((str(i), spec.title, program, compute.describe() if compute else "-", op.output.describe(),
                     f"{op.l1_bytes / 1024:.0f} KiB"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    head = plan.config.compute("qa_head")
    lines.append(f"outside the encoder: embeddings layernorm {plan.config.compute('embeddings').describe()}; QA head {head.describe()}")
    return "\n".join(lines)
