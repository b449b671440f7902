"""The plan as a reader sees it: text, one line per op with its program config, compute kernel settings, output
placement and L1 per core, or plain data with ttnn's names (`bertl11 plan`, `bertl11 plan --json`)."""

from __future__ import annotations

from ..cards import COL_MAJOR
from ..ops import DATA_MOVEMENT, ENCODER, OPS
from .types import Plan


def format_plan(plan: Plan, predicted: dict[str, tuple[float, str]] | None = None) -> str:
    """The plan as text; `predicted` (op -> (device ns, bound), from `estimate.predict_op`) adds a column."""
    card = plan.card
    x, y = plan.grid
    lines = [
        f"{card.title}, batch {plan.batch}, {plan.config.name}, seq {plan.shape.seq} hidden {plan.shape.hidden}",
        f"grid {x}x{y} of {card.grid[0]}x{card.grid[1]} ({plan.orientation}: batch along {'x' if plan.orientation == COL_MAJOR else 'y'}, "
        f"{plan.groups} hidden groups of {plan.shape.heads // plan.groups} heads), QKV weights interleaved in {plan.qkv_groups}",
        f"L1 per core: {card.l1_bytes // 1024} KiB, {card.l1_free_bytes // 1024} KiB free for buffers",
    ]
    untested = card.untested(plan.config.name, plan.batch)
    lines += [untested] if untested else []
    lines.append("")
    rows = [("#", "op", "program config", "compute", "output", "L1/core", *(["predicted (bound)"] if predicted else []))]
    for i, spec in enumerate(ENCODER, 1):
        op = plan.ops[spec.name]
        program = op.program.describe() if op.program else (DATA_MOVEMENT if spec.kind == DATA_MOVEMENT else "default (interleaved)")
        compute = plan.config.compute(spec.name)
        cost = [f"{predicted[spec.name][0] / 1e3:.1f} us ({predicted[spec.name][1]})"] if predicted else []
        rows.append((str(i), spec.title, program, compute.describe() if compute else "-", op.output.describe(),
                     f"{op.l1_bytes / 1024:.0f} KiB", *cost))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    head = plan.config.compute("qa_head")
    lines.append(f"outside the encoder: embeddings layernorm {plan.config.compute('embeddings').describe()}; QA head {head.describe()}")
    return "\n".join(lines)


def plan_data(plan: Plan, predicted: dict[str, tuple[float, str]] | None = None) -> dict:
    """The plan as plain data. Grids are [rows, columns] (ttnn's CoreCoord is x = column, y = row); each op carries
    its name in `ops.OPS`, its program config under ttnn's class and keyword names (None: ttnn's default
    program, or data movement), its compute kernel config's fields (None: data movement), and with `predicted`
    its predicted device time (ns) and bound."""
    card = plan.card
    x, y = plan.grid
    ops = []
    for spec in ENCODER:
        op = plan.ops[spec.name]
        program = None
        if op.program is not None:
            name, fields = op.program.ttnn_config()
            program = {"class": name, **fields}
        output = op.output
        compute = plan.config.compute(spec.name)
        ops.append({
            "op": spec.name, "title": OPS[spec.name].title, "program_config": program,
            "compute_kernel_config": compute.kernel_config(card.arch) if compute else None,
            "output": {"layout": output.layout, "buffer": output.buffer, "dtype": output.dtype,
                       "shard_shape": list(output.shard_shape) if output.shard_shape else None},
            "l1_bytes": op.l1_bytes,
            **({"predicted_device_ns": round(predicted[spec.name][0], 1), "bound": predicted[spec.name][1]}
               if predicted else {}),
        })
    return {
        "card": card.name, "title": card.title, "batch": plan.batch, "config": plan.config.name,
        "shape": {"seq": plan.shape.seq, "hidden": plan.shape.hidden, "heads": plan.shape.heads,
                  "intermediate": plan.shape.intermediate},
        "grid": [y, x], "card_grid": [card.grid[1], card.grid[0]], "orientation": plan.orientation,
        "hidden_groups": plan.groups, "qkv_groups": plan.qkv_groups,
        "l1_bytes": card.l1_bytes, "l1_free_bytes": card.l1_free_bytes,
        "untested_on_a_card": card.untested(plan.config.name, plan.batch),
        "ops": ops,
    }
