"""`bertl11 estimate`: the predicted device time of every op of a card's plan, of one matmul, or of every published
anchor the model is checked against (`bertl11.estimate`, `bertl11.anchors`).

    bertl11 estimate --card e150 --batch 12 --config BFLOAT8_B-SHARDED [--model M] [--csv F] [--json] [--against R]
    bertl11 estimate --card n150 --matmul 1024x1024x1024 --dtype BFLOAT8_B --math-fidelity HiFi2 [--json]
    bertl11 estimate --anchors [--json]
"""

from __future__ import annotations

import json
from pathlib import Path

from ..config import BFLOAT8_B, BFLOAT16
from ..errors import UserError
from . import options

DTYPES = (BFLOAT8_B.upper(), BFLOAT16.upper())


def matmul_shape(text: str) -> tuple[int, int, int]:
    """An argparse type: "MxKxN", three whole numbers, else a one-line `UserError`."""
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise UserError(f"--matmul {text!r}: give M x K x N, e.g. 1024x1024x1024")
    m, k, n = map(int, parts)
    return m, k, n


def add_arguments(parser) -> None:
    options.add_plan_options(parser, what="the model whose shapes are costed (only its config is read)")
    parser.add_argument("--matmul", type=matmul_shape, default=None, metavar="MxKxN",
                        help="cost one sharded 2D multicast matmul as tt-metal's GEMM benchmark runs it, not a model")
    parser.add_argument("--dtype", choices=DTYPES, default="BFLOAT8_B",
                        help="--matmul: the dtype of both inputs and the output (default %(default)s)")
    parser.add_argument("--anchors", action="store_true",
                        help="every published figure the model is checked against: prediction and error")
    parser.add_argument("--against", type=Path, default=None, metavar="REPORT",
                        help="a card's measured tt-metal ops report (ops_perf_results_*.csv) of one forward: "
                             "its ops beside the prediction, with the error of each")
    options.add_csv_option(parser, "write one row per device op of a forward, in tt-metal's ops-report columns")
    options.add_json_option(parser)


def run(args) -> int:
    if args.anchors:
        return _anchors(args)
    if args.matmul:
        return _matmul(args)
    return _model(args)


def _refuse(args, *names: str) -> None:
    given = [n for n in names if getattr(args, n.lstrip("-").replace("-", "_"))]
    if given:
        raise UserError(f"{given[0]} applies to a model's estimate, not to {'--anchors' if args.anchors else '--matmul'}")


def _matmul(args) -> int:
    from ..estimate import DEFAULT_FIDELITY, estimate_matmul

    _refuse(args, "--csv", "--against", "--model")
    m, k, n = args.matmul
    fidelity = args.math_fidelity or DEFAULT_FIDELITY  # one matmul without a compute config: ttnn's default
    result = estimate_matmul(args.card, m, k, n, args.dtype.lower(), fidelity)
    prog = result.program
    if args.json:
        print(json.dumps({"card": args.card, "m": m, "k": k, "n": n, "dtype": args.dtype, "math_fidelity": fidelity,
                    "grid": list(prog.grid), "program": prog.describe(), "device_us": round(result.device_us, 3),
                    "utilisation": round(result.utilisation, 4), "tflops": round(result.tflops, 2),
                    "bound": result.cycles.bound}, indent=2))
        return 0
    print(f"{result.card.title}: {m}x{k}x{n} {args.dtype} at {fidelity} on {prog.grid[0]}x{prog.grid[1]} cores "
          f"({prog.describe()})")
    print(f"device: {result.device_us:.1f} us, {result.tflops:.1f} TFLOP/s, matrix engine {100 * result.utilisation:.1f}% "
          f"utilised, bound by {result.cycles.bound}")
    return 0


def _model(args) -> int:
    from ..estimate import estimate_model, report_rows
    from ..files import check_output_path, write_csv

    if args.csv:
        check_output_path(args.csv, "--csv")
    shape, layers, name = options.planned_model(args)
    estimate = estimate_model(args.card, args.batch, args.config, shape, layers, args.math_fidelity)
    rows = report_rows(estimate)
    if args.csv:
        write_csv(args.csv, rows)
    comparison = _compare(args.against, rows, args.batch) if args.against else None
    if args.json:
        print(json.dumps(_summary(estimate, name) | {"ops": rows} | ({"against": comparison} if comparison else {}), indent=2))
        return 0
    print(_table(estimate, name))
    if comparison:
        print(_comparison_text(comparison))
    if args.csv:
        print(f"wrote {args.csv}")
    return 0


def _summary(estimate, name: str) -> dict:
    from ..estimate import HOST_US_PER_OP, tensix

    plan = estimate.plan
    return {
        "card": plan.card.name, "batch": plan.batch, "config": plan.config.name, "model": name, "layers": estimate.layers,
        "math_fidelity": estimate.fidelity, "device_ops": len(estimate.ops),
        "device_ms": round(estimate.device_ns / 1e6, 3), "samples_per_s": round(estimate.samples_per_s, 1),
        "untraced_samples_per_s": round(plan.batch / estimate.untraced_ns * 1e9, 1),
        "traced_samples_per_s": round(plan.batch / estimate.traced_ns * 1e9, 1),
        "host_us_per_op": HOST_US_PER_OP, "traced_op_gap_us": tensix(plan.card).op_gap_ns / 1e3,
    }


def _table(estimate, name: str) -> str:
    """One line per op of a layer (all layers are alike), the embeddings' and QA head's device ops, then the totals."""
    from ..estimate import HOST_US_PER_OP, tensix

    plan = estimate.plan
    summary = _summary(estimate, name)
    lines = [
        f"{plan.card.title}, batch {plan.batch}, {plan.config.name}, {name} ({estimate.layers} layers, seq {plan.shape.seq}), "
        f"matmuls at {estimate.fidelity}",
        "",
    ]
    rows = [("op", "device op", "program", "cores", "us", "bound", "engine")]
    seen = set()
    for op in estimate.ops:
        key = (op.op, op.op_code, op.program)
        if op.layer is not None and key in seen:
            continue
        seen.add(key)
        times = "" if op.layer is None else f" x{estimate.layers}"
        rows.append((op.label, op.op_code, op.program, str(op.cores), f"{op.ns / 1e3:.1f}{times}", op.bound,
                     f"{100 * op.utilisation:.0f}%" if op.flops else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    layer_us = sum(op.ns for op in estimate.ops if op.layer == 0) / 1e3
    lines += [
        "",
        f"per layer {layer_us:.0f} us; {summary['device_ops']} device ops per forward",
        f"device: {summary['device_ms']:.2f} ms per forward, {summary['samples_per_s']:.1f} samples/s",
        f"end to end, op by op: {summary['untraced_samples_per_s']:.1f} samples/s "
        f"(assumes {HOST_US_PER_OP} us of host dispatch per op, not overlapped)",
        f"end to end, traced + 2 command queues: {summary['traced_samples_per_s']:.1f} samples/s "
        f"(assumes {tensix(plan.card).op_gap_ns / 1e3:.1f} us between ops; inputs uploaded during the previous run)",
    ]
    return "\n".join(lines)


def _compare(path: Path, rows: list[dict], batch: int) -> dict:
    import pandas as pd

    from ..tt_profile import KERNEL_NS, compare_reports, device_throughput, error_by_op, read_ops_report

    measured = read_ops_report(path)
    predicted = pd.DataFrame(rows)
    pairs, unpaired = compare_reports(measured, predicted)
    if pairs.empty:
        raise UserError(f"{path}: none of its OP CODEs line up with the estimate's; is it a report of this model?")
    return {
        "report": str(path), "paired_ops": len(pairs), "unpaired": unpaired,
        "measured_samples_per_s": round(device_throughput(measured, batch), 1),
        "predicted_samples_per_s": round(batch / (predicted[KERNEL_NS].sum() / 1e9), 1),
        "by_op": error_by_op(pairs).reset_index().to_dict("records"),
        "pairs": pairs.to_dict("records"),
    }


def _comparison_text(comparison: dict) -> str:
    lines = ["", f"against {comparison['report']}: {comparison['paired_ops']} ops paired, "
                 f"{comparison['unpaired']['measured']} measured and {comparison['unpaired']['predicted']} predicted left unpaired"]
    rows = [("op", "measured us", "predicted us", "error")]
    rows += [(r["op"], f"{r['measured_us']:.1f}", f"{r['predicted_us']:.1f}", f"{r['error_%']:+.1f}%") for r in comparison["by_op"]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    measured, predicted = comparison["measured_samples_per_s"], comparison["predicted_samples_per_s"]
    lines.append(f"device samples/s: measured {measured}, predicted {predicted} ({100 * (predicted / measured - 1):+.1f}%)")
    return "\n".join(lines)


def _anchors(args) -> int:
    from ..anchors import anchor_table, evaluate

    _refuse(args, "--csv", "--against", "--model", "--matmul", "--math-fidelity")
    results = evaluate()
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        print(anchor_table(results))
    return 0
