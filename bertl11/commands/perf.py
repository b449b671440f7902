"""`bertl11 perf`: first and cached runs, inferences/s, side by side with HF transformers (`bertl11.perf`).

`add_model_arguments` holds the options `perf` and `profile` share; `load_model` checks their output paths
before a long run, not after it.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..files import check_output_path, write_csv
from . import options

DEFAULT_ITERATIONS = 10


def add_model_arguments(parser, *, default_iterations: int = DEFAULT_ITERATIONS, trace: bool | None = None) -> None:
    """The options `perf` and `profile` share: the model options (fast path by default) and the input's shape.
    `trace`: perf offers --trace (off by default: the first run then shows the op-by-op path); profile times ops."""
    options.add_model_options(parser, batch=1, fast=True, batch_help="sequences per inference", trace=trace)
    parser.add_argument("--seq", type=options.count("--seq", 2), default=384, help="sequence length (default %(default)s)")
    parser.add_argument("--iterations", type=options.count("--iterations"), default=default_iterations,
                        help="cached runs to time after the first (default %(default)s)")


def add_arguments(parser) -> None:
    add_model_arguments(parser, trace=False)
    parser.add_argument("--compare", choices=("hf",), default=None,
                        help="also time HF transformers BertForQuestionAnswering on the same inputs, in float32 "
                             "and (where native) bfloat16; the faster is the yardstick")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the model (on CUDA with CUDA graphs); the first run includes compilation")
    options.add_csv_option(parser, "write the report as a one-row CSV")


def load_model(args, outputs: dict[str, Path | None], compile: str):
    """The model `args` describe, with its sequence length checked against its position table. The `outputs`
    ({option: path}) are checked first: a bad output path is refused before a long run, not after it.
    `compile`: what the fast path does when its compiled forward is not cached yet (`compiled.POLICIES`)."""
    for option, path in outputs.items():
        if path is not None:
            check_output_path(path, option)
    model = options.load_model(args, compile=compile)
    if args.seq > model.shape.max_position_embeddings:
        raise UserError(f"--seq {args.seq} exceeds the model's {model.shape.max_position_embeddings} positions")
    return model


def run(args) -> int:
    from ..perf import measure

    # perf times the fast path as it runs: compiled where this machine compiles (the load pays any compile);
    # --compile instead puts torch.compile around the eager ops
    with load_model(args, {"--csv": args.csv}, "never" if args.compile else "build") as model:
        row = measure(model, batch=args.batch, seq=args.seq, iterations=args.iterations,
                      compare_hf=args.compare == "hf", compile=args.compile)
    width = max(len(k) for k in row)
    for key, value in row.items():
        print(f"{key:<{width}}  {value}")
    if args.csv:
        write_csv(args.csv, [row])
        print(f"wrote {args.csv}")
    return 0
