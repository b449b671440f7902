"""`bertl11 profile`: one row per op per layer (shapes, time, FLOPs, GFLOP/s) as CSV, and a bar chart."""

from __future__ import annotations

from pathlib import Path

from ..files import write_csv
from . import options
from .perf import add_model_arguments, load_model

DEFAULT_ITERATIONS = 3


def add_arguments(parser) -> None:
    add_model_arguments(parser, default_iterations=DEFAULT_ITERATIONS)
    options.add_csv_option(parser, "write one row per executed op to this CSV", required=True)
    parser.add_argument("--plot", type=Path, default=None, help="also draw time by op as a PNG bar chart")


def run(args) -> int:
    from ..ops import op_label
    from ..perf import synthetic_inputs
    from ..profile import plot, profile_model, report_rows, totals_by_op

    # op by op: the compiled forward fuses the ops this times one by one
    with load_model(args, {"--csv": args.csv, "--plot": args.plot}, "never") as model:
        calls = profile_model(model, synthetic_inputs(model.shape.vocab_size, args.batch, args.seq), args.iterations)
    write_csv(args.csv, report_rows(calls))
    total = sum(c.seconds for c in calls)
    print(f"{model.source.name} {args.config} batch {args.batch} seq {args.seq} on {args.device}: "
          f"{total * 1e3:.1f} ms per inference over {len(calls)} op calls")
    for op, (seconds, flops) in totals_by_op(calls).items():
        rate = f"{flops / seconds / 1e9:8.1f} GFLOP/s" if flops else ""
        print(f"  {op_label(op):<22} {seconds * 1e3:9.2f} ms  {100 * seconds / total:5.1f}%  {rate}")
    print(f"wrote {args.csv}")
    if args.plot:
        plot(calls, args.plot, f"{model.source.name}, {args.config}, batch {args.batch}, seq {args.seq}, {args.device}")
        print(f"wrote {args.plot}")
    return 0
