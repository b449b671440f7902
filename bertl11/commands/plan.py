"""`bertl11 plan`: the Tensix sharding plan for a card, batch and config: every op's program config, derived and
validated (`bertl11.plan`), and the compute kernel settings it runs with (`config.RunConfig.compute`)."""

from __future__ import annotations

from ..config import TT_CONFIGS
from . import options


def add_arguments(parser) -> None:
    options.add_card_option(parser, "e150", "Tenstorrent card (default %(default)s)")
    options.add_batch_option(parser, 12, "sequences per batch")
    options.add_config_option(parser, TT_CONFIGS)
    options.add_math_fidelity_option(parser)


def run(args) -> int:
    from ..config import get_run_config
    from ..plan import format_plan, make_plan

    print(format_plan(make_plan(args.card, args.batch, get_run_config(args.config, args.math_fidelity))))
    return 0
