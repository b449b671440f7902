"""The command line's shared options, each declared once, so a flag means the same thing in every command.

    --model --config --cache-dir      which weights (`add_weight_options`; `bertl11 convert` takes only these)
    --device --batch --threads        where and how many (`add_model_options` adds these and the above)
    --fast / --simulate               the torch backend's speed path or its per-op simulation of the config
    --math-fidelity                   every matmul's math fidelity (the card's and the simulation's)
    --exact-accumulation              the simulation rounds the card's bfloat16 destination at every step
    --card                            a Tenstorrent card, for its grid and batch limits
    --mesh --trace / --no-trace       --device tt: data parallel over a mesh of chips; the traced, 2-queue forward
    --watcher                         --device tt: tt-metal's watcher on, for a first run on a card
    --data --limit --seed             SQuAD v2 questions, how many, and a seed
    --out --csv --json                where results go
    --rank-timeout                    under torchrun, how long ranks wait on each other (`distributed.Job`)

Choices and help come from the code's tables (`config.RUN_CONFIGS`, `config.DEVICES`, `cards.CARDS`,
`sources.OFFLINE_MODELS`). Counts are checked while parsing, with a one-line `UserError`. A config name is
checked where it is used (`config.get_run_config`), so a command may read its input file first.

Nothing here imports torch: `bertl11 COMMAND --help` stays instant. The helpers at the end (`apply_threads`,
`apply_watcher`, `compile_policy`, `load_model`) turn parsed options into a loaded model, for the commands that run one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cards import CARDS
from ..config import DEFAULT_RUN_CONFIG, DEVICES, MATH_FIDELITIES, RUN_CONFIGS, TT_CONFIGS
from ..errors import UserError, require_at_least
from ..sources import DEFAULT_MODEL, OFFLINE_MODELS
from ..squad.data import HUB_DATASET, LOCAL_DEV_FILE

MODEL_HELP = f"HF hub id, local model directory, {', '.join(OFFLINE_MODELS)} or large-random-N"


def count(option: str, minimum: int = 1):
    """An argparse type: a whole number of at least `minimum`, else a one-line `UserError` naming `option`."""

    def parse(text: str) -> int:
        return require_at_least(option, int(text), minimum)

    parse.__name__ = "int"  # argparse names the type in "invalid int value"
    return parse


def positive(option: str, unit: str = ""):
    """An argparse type: a number above 0, else a one-line `UserError` naming `option` (and its `unit`)."""

    def parse(text: str) -> float:
        value = float(text)
        if not value > 0:
            raise UserError(f"{option} must be a number{' of ' + unit if unit else ''} above 0, not {text}")
        return value

    parse.__name__ = "float"
    return parse


def add_model_option(parser: argparse.ArgumentParser, *, default: str | None = DEFAULT_MODEL,
                     default_help: str | None = None, option: str = "--model", required: bool = False,
                     what: str = "the model") -> None:
    """A `--model` value (`sources.resolve_model`); `default` None: the command picks one (`default_help` says how).
    `option`: the name where a command's model has another role (`finetune --base`)."""
    shown = "" if required else f" (default {default_help or default})"
    parser.add_argument(option, default=None if required else default, required=required,
                        help=f"{what}: {MODEL_HELP}{shown}")


def add_config_option(parser: argparse.ArgumentParser, configs=tuple(RUN_CONFIGS)) -> None:
    parser.add_argument("--config", default=DEFAULT_RUN_CONFIG, metavar="CONFIG",
                        help=f"run configuration: {', '.join(configs)} (default %(default)s)")


def add_cache_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="weight cache root (default $BERTL11_CACHE or ~/.cache/bertl11)")


def add_weight_options(parser: argparse.ArgumentParser, *, model: str | None = DEFAULT_MODEL,
                       model_help: str | None = None) -> None:
    """--model, --config, --cache-dir. `model` None: the command picks one (`model_help` says how)."""
    add_model_option(parser, default=model, default_help=model_help)
    add_config_option(parser)
    add_cache_dir_option(parser)


def add_batch_option(parser: argparse.ArgumentParser, default: int, what: str = "sequences per model call",
                     aliases: tuple[str, ...] = ()) -> None:
    parser.add_argument("--batch", *aliases, dest="batch", type=count("--batch"), default=default,
                        help=f"{what} (default %(default)s)")


def add_card_option(parser: argparse.ArgumentParser, default: str | None, help_text: str) -> None:
    parser.add_argument("--card", default=default, choices=list(CARDS), help=help_text)


def add_device_option(parser: argparse.ArgumentParser, choices=DEVICES, what: str = "where the model runs") -> None:
    parser.add_argument("--device", default="cpu", choices=list(choices), help=f"{what} (default %(default)s)")


def mesh_shape(text: str) -> tuple[int, int]:
    """An argparse type: "RxC" chips (1x2: an n300's two chips, 2x4: a T3000), else a one-line `UserError`."""
    rows, x, cols = text.lower().partition("x")
    if not (x and rows.isdigit() and cols.isdigit() and int(rows) >= 1 and int(cols) >= 1):
        raise UserError(f"--mesh {text!r}: give rows x columns of chips, e.g. 1x2 (n300) or 2x4 (T3000)")
    return int(rows), int(cols)


def add_tt_options(parser: argparse.ArgumentParser, *, trace: bool | None) -> None:
    """--mesh, --watcher and, unless `trace` is None, --trace/--no-trace with `trace` the command's default on tt."""
    parser.add_argument("--mesh", type=mesh_shape, default=None, metavar="RxC",
                        help="--device tt: run data parallel on RxC chips (1x2: n300, 2x4: T3000); --batch is split over them")
    parser.add_argument("--watcher", action="store_true",
                        help="--device tt: run tt-metal's watcher (TT_METAL_WATCHER), which logs where every core waits to "
                             "generated/watcher/watcher.log and stops on a tripped assert: for a first run on a card")
    if trace is None:
        return
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--trace", dest="trace", action="store_true", default=None,
                       help="--device tt: capture the forward once and replay it, inputs uploaded on a second command queue"
                            + (" (the default)" if trace else ""))
    group.add_argument("--no-trace", dest="trace", action="store_false", help="--device tt: run the forward op by op")
    parser.set_defaults(trace_default=trace)


def tt_settings(args: argparse.Namespace) -> tuple[bool, tuple[int, int]]:
    """(trace, mesh) for the model options: the command's defaults on tt; --trace, --mesh or --watcher elsewhere is refused."""
    trace, mesh, watcher = getattr(args, "trace", None), getattr(args, "mesh", None), getattr(args, "watcher", False)
    if args.device != "tt":
        if trace or mesh or watcher:
            option = "--trace" if trace else "--mesh" if mesh else "--watcher"
            raise UserError(f"{option} applies to --device tt, not --device {args.device}")
        return False, (1, 1)
    return (trace if trace is not None else getattr(args, "trace_default", False)), mesh or (1, 1)


def add_math_fidelity_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--math-fidelity", choices=list(MATH_FIDELITIES), default=None,
                        help="run every matmul at this fidelity, on the card and in its simulation (default: the seed's, "
                             "LoFi; FLOAT32 and --fast compute exactly)")


def add_plan_options(parser: argparse.ArgumentParser, what: str) -> None:
    """--card, --batch, --config, --model and --math-fidelity: a BERT placed on a Tenstorrent card (plan, estimate);
    `what` says what the command reads of --model."""
    add_card_option(parser, "e150", "Tenstorrent card (default %(default)s)")
    add_batch_option(parser, 12, "sequences per batch")
    add_config_option(parser, TT_CONFIGS)
    add_model_option(parser, default=None, default_help="BERT-large's shapes, 24 layers, as the seed", what=what)
    add_math_fidelity_option(parser)


def planned_model(args: argparse.Namespace):
    """(`plan.EncoderShape`, layers, name) of the --model `add_plan_options` declared: BERT-large's when none is given;
    of any other model only its config is read."""
    from ..plan import BERT_LARGE, EncoderShape

    if args.model is None:
        return BERT_LARGE, 24, "BERT-large"
    from ..sources import model_shape

    shape = model_shape(args.model)
    return EncoderShape.from_bert(shape), shape.num_layers, args.model


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=count("--threads"), default=None,
                        help="torch CPU threads (default: one per core, shared out among the ranks on this node under torchrun)")


def add_model_options(parser: argparse.ArgumentParser, *, batch: int, fast: bool, model: str | None = DEFAULT_MODEL,
                      model_help: str | None = None, batch_help: str = "sequences per model call", trace: bool | None = None) -> None:
    """The weight options plus --device, --batch, --threads, --fast/--simulate (`fast`: the default) and the
    Tenstorrent options (`add_tt_options`; `trace` None: the command has no traced path)."""
    add_weight_options(parser, model=model, model_help=model_help)
    add_device_option(parser)
    add_batch_option(parser, batch, batch_help)
    add_threads_option(parser)
    path = parser.add_mutually_exclusive_group()
    path.add_argument("--fast", dest="fast", action="store_true", default=fast,
                      help="torch backend: the speed path" + (" (the default)" if fast else ""))
    path.add_argument("--simulate", dest="fast", action="store_false",
                      help="torch backend: the per-op simulation of the config's storage dtypes and the card's arithmetic "
                           "(what parity tests check)" + ("" if fast else " (the default)"))
    add_math_fidelity_option(parser)
    parser.add_argument("--exact-accumulation", action="store_true",
                        help="simulation: round the card's bfloat16 destination at every matrix-engine step, as the card "
                             "does, rather than once per result (several times slower)")
    add_tt_options(parser, trace=trace)


def add_data_option(parser: argparse.ArgumentParser, *, hub_split: str = "validation", default: str | None = "auto") -> None:
    """--data: SQuAD v2 questions: a SQuAD-format JSON file, 'hub' (rajpurkar/squad_v2, `hub_split`) or, where
    `default` is "auto", the hub when it answers, else the checkout's dev file. `default` None: required."""
    choices = f"a SQuAD-format JSON file or 'hub' ({HUB_DATASET} {hub_split})"
    if default == "auto":
        help_text = f"{choices}, or 'auto' (the hub if reachable, else {LOCAL_DEV_FILE} in the current directory; the default)"
    else:
        help_text = choices
    parser.add_argument("--data", default=default, required=default is None, help=help_text)


def add_limit_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--limit", type=count("--limit"), default=None, help=f"only the first N {what}")


def add_seed_option(parser: argparse.ArgumentParser, default: int, what: str) -> None:
    parser.add_argument("--seed", type=int, default=default, help=f"seeds {what} (default %(default)s)")


def add_out_option(parser: argparse.ArgumentParser, what: str, default: str | None = None) -> None:
    """--out: a directory the command writes (`default` None: required)."""
    parser.add_argument("--out", default=default, required=default is None,
                        help=what + (" (default %(default)s)" if default else ""))


def add_csv_option(parser: argparse.ArgumentParser, what: str, required: bool = False) -> None:
    parser.add_argument("--csv", type=Path, default=None, required=required, help=what)


def add_json_option(parser: argparse.ArgumentParser, what: str = "print one JSON object instead of the report") -> None:
    parser.add_argument("--json", action="store_true", help=what)


def add_rank_timeout_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rank-timeout", type=positive("--rank-timeout", "seconds"), default=60.0, metavar="SECONDS",
                        help="under torchrun: how long a rank waits for a collective, or for a silent rank's heartbeat, "
                             "before the job fails naming it (default %(default)g)")


def apply_threads(args: argparse.Namespace) -> None:
    """--threads, before any torch work; under torchrun, by default this node's cores over its ranks."""
    from ..distributed import Ranks, threads_per_rank

    local_ranks = Ranks.from_environment().local_size
    threads = args.threads or (threads_per_rank(local_ranks) if local_ranks > 1 else None)
    if threads:
        import torch

        torch.set_num_threads(threads)


def apply_watcher(args: argparse.Namespace) -> None:
    """--watcher: tt-metal's watcher on, before ttnn opens the card (`tt_settings` refuses it off tt)."""
    if getattr(args, "watcher", False):
        from ..backends.ttnn import turn_on_watcher

        turn_on_watcher()


def compile_policy(args: argparse.Namespace, sequences: int, model: str | None = None) -> str:
    """What a run of about `sequences` windows (counted at 384 tokens) asks of the fast path's compiled forward
    (`compiled.POLICIES`): to compile it where the run pays for the compile (`machine.Machine.compile_policy`),
    else to use it only if it is cached."""
    if not args.fast or args.device != "cpu":
        return "cached"
    apply_threads(args)  # the estimate counts the threads the run will use
    from ..machine import probe
    from ..profile import model_flops
    from ..sources import resolve_model

    return probe().compile_policy(model_flops(resolve_model(model or args.model).shape, sequences, 384))


def load_model(args: argparse.Namespace, model: str | None = None, compile: str = "cached"):
    """The `QAModel` the model options describe (`model` overrides --model, e.g. the demo's fallback); `compile`:
    what the fast path does when its compiled forward is not cached yet (`compiled.POLICIES`)."""
    from ..runtime import QAModel

    apply_threads(args)
    trace, mesh = tt_settings(args)
    apply_watcher(args)
    return QAModel.load(model or args.model, args.config, args.device, cache_dir=args.cache_dir, fast=args.fast, trace=trace,
                        mesh=mesh, compile=compile, math_fidelity=args.math_fidelity,
                        exact_accumulation=args.exact_accumulation)
