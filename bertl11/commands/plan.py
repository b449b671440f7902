"""`bertl11 plan`: the Tensix sharding plan for a card, batch, config and model: every op's program config, derived
and validated (`bertl11.plan`), the compute kernel settings it runs with (`config.RunConfig.compute`), and the device
time `bertl11 estimate` predicts for it, as text or as JSON."""

from __future__ import annotations

import json

from . import options


def add_arguments(parser) -> None:
    options.add_plan_options(parser, what="the model whose shape is planned (only its config is read)")
    options.add_json_option(parser, "print the plan as one JSON object (grids as [rows, columns], program configs "
                                    "under ttnn's names)")


def run(args) -> int:
    from ..config import get_run_config
    from ..estimate import predict_op
    from ..ops import ENCODER_OPS
    from ..plan import format_plan, make_plan, plan_data

    shape, _, _ = options.planned_model(args)
    plan = make_plan(args.card, args.batch, get_run_config(args.config, args.math_fidelity), shape)
    costs = {name: predict_op(plan, name) for name in ENCODER_OPS}  # the time `bertl11 estimate` predicts per op
    predicted = {name: (cost.ns, cost.bound) for name, cost in costs.items()}
    print(json.dumps(plan_data(plan, predicted), indent=2) if args.json else format_plan(plan, predicted))
    return 0
