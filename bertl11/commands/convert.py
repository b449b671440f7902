"""`bertl11 convert`: HF weights into the verified on-disk weight cache (BFLOAT8_B packed), timed."""

from __future__ import annotations

import time

from . import options


def add_arguments(parser) -> None:
    options.add_weight_options(parser)
    parser.add_argument("--force", action="store_true", help="convert again even if a valid cache exists")


def run(args) -> int:
    from ..cache import cache_bytes, load_or_convert
    from ..config import get_run_config
    from ..sources import resolve_model

    source = resolve_model(args.model)
    run_config = get_run_config(args.config)
    started = time.perf_counter()
    _, outcome = load_or_convert(source, run_config, args.cache_dir, rebuild=args.force)
    seconds = time.perf_counter() - started
    state = "cache is valid, nothing to convert" if outcome.hit else outcome.detail
    print(f"{source.name} {run_config.name}: {state} ({seconds:.1f} s, {cache_bytes(outcome.directory) / 2**20:.1f} MiB in {outcome.directory})")
    return 0
