"""`bertl11 demo`: answer one batch of questions from a JSON file and print them with the seed's timings."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from ..config import get_run_config
from ..demo import DEFAULT_BATCH, DemoResult, check_batch, read_inputs, run_demo
from ..packaged import DEMO_INPUT
from ..sources import DEFAULT_MODEL, OFFLINE_DEFAULT, default_model
from . import options

CONTEXT_PREVIEW = 100


def add_arguments(parser) -> None:
    parser.add_argument("--input", type=Path, default=DEMO_INPUT, help="JSON list of exactly BATCH {context, question} objects")
    options.add_model_options(parser, batch=DEFAULT_BATCH, fast=False, model=None, batch_help="inputs per batch",
                              model_help=f"{DEFAULT_MODEL} if available, else {OFFLINE_DEFAULT}", trace=True)
    options.add_card_option(parser, None, "with --device tt: the card, for its batch limits (default: the card ttnn opens)")
    options.add_json_option(parser)


def shorten(text: str, width: int = CONTEXT_PREVIEW) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def print_report(result: DemoResult, out=None) -> None:
    out = out or sys.stdout  # looked up at the call: a default bound at import would outlive a redirected stdout
    for row in result.answers:
        answer = row["answer"] or "no answer"
        print(f"[{row['index'] + 1}/{result.batch}] question: {row['question']}", file=out)
        print(f"        context:  {shorten(row['context'])}", file=out)
        print(f"        answer:   {answer}  (score {row['score']:.3g})", file=out)
    t = result.timings
    print(f"\n{result.model} | {result.config} | {result.device} | batch {result.batch} ({result.sequences} sequences)", file=out)
    print(f"  preprocessing         {t['preprocessing_s']:8.3f} s", file=out)
    print(f"  weight loading        {t['weight_loading_s']:8.3f} s  cache {result.cache}", file=out)
    print(f"  first run             {t['first_run_s']:8.3f} s", file=out)
    print(f"  cached run            {t['cached_run_s']:8.3f} s", file=out)
    print(f"  throughput            {result.throughput:8.2f} inferences/s", file=out)
    print(f"  postprocessing        {t['postprocessing_s']:8.3f} s", file=out)


def run(args) -> int:
    trace, mesh = options.tt_settings(args)
    check_batch(args.batch // (mesh[0] * mesh[1]), args.device, args.card)
    inputs, warnings = read_inputs(args.input, args.batch)
    get_run_config(args.config, args.math_fidelity)
    model_name, fallback = (args.model, None) if args.model is not None else default_model()
    if fallback:
        warnings.append(fallback)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    options.apply_threads(args)
    options.apply_watcher(args)
    compile = options.compile_policy(args, len(inputs), model_name)  # the compiled forward when cached or worth it
    result = run_demo(inputs, model_name, args.config, args.device, args.batch, args.card, warnings, args.cache_dir, args.fast,
                      trace, mesh, compile, args.math_fidelity, args.exact_accumulation, progress=sys.stderr.isatty(),
                      notice=lambda line: print(f"warning: {line}", file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps({**asdict(result), "throughput": result.throughput}, indent=2))
    else:
        print_report(result)
    return 0
