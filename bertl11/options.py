"""The command line's shared options, declared once, so a flag means the same thing in every command.

    --model --config --cache-dir      which weights (`add_weight_options`; `bertl11 convert` takes only these)
    --device --batch --threads        where and how many (`add_model_options` adds these and the above)
    --fast / --simulate               the torch backend's speed path or its per-op simulation of the config
    --card                            a Tenstorrent card, for its grid and batch limits
    --mesh --trace / --no-trace       --device tt: data parallel over a mesh of chips; the traced, 2-queue forward
    --data                            SQuAD v2 questions
    --rank-timeout                    under torchrun, how long ranks wait on each other (`distributed.Job`)

Choices and help come from the code's tables (`config.RUN_CONFIGS`, `runtime.DEVICES`, `devices.DEVICES`,
`sources.OFFLINE_MODELS`). Counts are checked while parsing, with a one-line `UserError`. A config name is
checked where it is used (`config.get_run_config`), so a command may read its input file first.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .config import DEFAULT_RUN_CONFIG, RUN_CONFIGS
from .devices import DEVICES as CARDS
from .errors import UserError, require_at_least
from .sources import DEFAULT_MODEL, OFFLINE_MODELS

MODEL_HELP = f"HF hub id, local model directory, {', '.join(OFFLINE_MODELS)} or large-random-N"


def count(option: str, minimum: int = 1):
    """An argparse type: a whole number of at least `minimum`, else a one-line `UserError` naming `option`."""

    def parse(text: str) -> int:
        return require_at_least(option, int(text), minimum)

    parse.__name__ = "int"  # argparse names the type in "invalid int value"
    return parse


def positive_seconds(option: str):
    """An argparse type: a number of seconds above 0, else a one-line `UserError` naming `option`."""

    def parse(text: str) -> float:
        value = float(text)
        if not value > 0:
            raise UserError(f"{option} must be a number of seconds above 0, not {text}")
        return value

    parse.__name__ = "float"
    return parse


def add_weight_options(parser: argparse.ArgumentParser, *, model: str | None = DEFAULT_MODEL,
                       model_help: str | None = None, configs=tuple(RUN_CONFIGS)) -> None:
    """--model, --config, --cache-dir. `model` None: the command picks one (`model_help` says how)."""
    parser.add_argument("--model", default=model, help=f"{MODEL_HELP} (default {model_help or model})")
    parser.add_argument("--config", default=DEFAULT_RUN_CONFIG, metavar="CONFIG",
                        help=f"run configuration: {', '.join(configs)} (default %(default)s)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="weight cache root (default $BERTL11_CACHE or ~/.cache/bertl11)")


def add_batch_option(parser: argparse.ArgumentParser, default: int, what: str = "sequences per model call") -> None:
    parser.add_argument("--batch", type=count("--batch"), default=default, help=f"{what} (default %(default)s)")


def add_card_option(parser: argparse.ArgumentParser, default: str | None, help_text: str) -> None:
    parser.add_argument("--card", default=default, choices=list(CARDS), help=help_text)


def mesh_shape(text: str) -> tuple[int, int]:
    """An argparse type: "RxC" chips (1x2: an n300's two chips, 2x4: a T3000), else a one-line `UserError`."""
    rows, x, cols = text.lower().partition("x")
    if not (x and rows.isdigit() and cols.isdigit() and int(rows) >= 1 and int(cols) >= 1):
        raise UserError(f"--mesh {text!r}: give rows x columns of chips, e.g. 1x2 (n300) or 2x4 (T3000)")
    return int(rows), int(cols)


def add_tt_options(parser: argparse.ArgumentParser, *, trace: bool | None) -> None:
    """--mesh and, unless `trace` is None, --trace/--no-trace with `trace` the command's default on tt."""
    parser.add_argument("--mesh", type=mesh_shape, default=None, metavar="RxC",
                        help="--device tt: run data parallel on RxC chips (1x2: n300, 2x4: T3000); --batch is split over them")
    if trace is None:
        return
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--trace", dest="trace", action="store_true", default=None,
                       help="--device tt: capture the forward once and replay it, inputs uploaded on a second command queue"
                            + (" (the default)" if trace else ""))
    group.add_argument("--no-trace", dest="trace", action="store_false", help="--device tt: run the forward op by op")
    parser.set_defaults(trace_default=trace)


def tt_settings(args: argparse.Namespace) -> tuple[bool, tuple[int, int]]:
    """(trace, mesh) for the model options: the command's defaults on tt; asking for either elsewhere is refused."""
    trace, mesh = getattr(args, "trace", None), getattr(args, "mesh", None)
    if args.device != "tt":
        if trace or mesh:
            raise UserError(f"{'--trace' if trace else '--mesh'} applies to --device tt, not --device {args.device}")
        return False, (1, 1)
    return (trace if trace is not None else getattr(args, "trace_default", False)), mesh or (1, 1)


def add_model_options(parser: argparse.ArgumentParser, *, batch: int, fast: bool, model: str | None = DEFAULT_MODEL,
                      model_help: str | None = None, batch_help: str = "sequences per model call", trace: bool | None = None) -> None:
    """The weight options plus --device, --batch, --threads, --fast/--simulate (`fast`: the default) and the
    Tenstorrent options (`add_tt_options`; `trace` None: the command has no traced path)."""
    from .runtime import DEVICES

    add_weight_options(parser, model=model, model_help=model_help)
    parser.add_argument("--device", default="cpu", choices=DEVICES, help="where the model runs (default %(default)s)")
    add_batch_option(parser, batch, batch_help)
    parser.add_argument("--threads", type=count("--threads"), default=None,
                        help="torch CPU threads (default: one per core, shared out among the ranks on this node under torchrun)")
    path = parser.add_mutually_exclusive_group()
    path.add_argument("--fast", dest="fast", action="store_true", default=fast,
                      help="torch backend: the speed path" + (" (the default)" if fast else ""))
    path.add_argument("--simulate", dest="fast", action="store_false",
                      help="torch backend: the per-op simulation of the config's storage dtypes (what parity tests check)"
                           + ("" if fast else " (the default)"))
    add_tt_options(parser, trace=trace)


def add_data_option(parser: argparse.ArgumentParser) -> None:
    from .squad.data import DATA_HELP

    parser.add_argument("--data", default="auto", help=DATA_HELP)


def add_rank_timeout_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rank-timeout", type=positive_seconds("--rank-timeout"), default=60.0, metavar="SECONDS",
                        help="under torchrun: how long a rank waits for a collective, or for a silent rank's heartbeat, "
                             "before the job fails naming it (default %(default)g)")


def apply_threads(args: argparse.Namespace) -> None:
    """--threads, before any torch work; under torchrun, by default this node's cores over its ranks."""
    from .distributed import Ranks, threads_per_rank

    local_ranks = Ranks.from_environment().local_size
    threads = args.threads or (threads_per_rank(local_ranks) if local_ranks > 1 else None)
    if threads:
        import torch

        torch.set_num_threads(threads)


def load_model(args: argparse.Namespace, model: str | None = None):
    """The `QAModel` the model options describe (`model` overrides --model, e.g. the demo's fallback)."""
    from .runtime import QAModel

    apply_threads(args)
    trace, mesh = tt_settings(args)
    return QAModel.load(model or args.model, args.config, args.device, cache_dir=args.cache_dir, fast=args.fast, trace=trace, mesh=mesh)
