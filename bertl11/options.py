"""The command line's shared options, declared once, so a flag means the same thing in every command.

    --model --config --cache-dir      which weights (`add_weight_options`; `bertl11 convert` takes only these)
    --device --batch --threads        where and how many (`add_model_options` adds these and the above)
    --fast / --simulate               the torch backend's speed path or its per-op simulation of the config
    --card                            a Tenstorrent card, for its grid and batch limits
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


def add_model_options(parser: argparse.ArgumentParser, *, batch: int, fast: bool, model: str | None = DEFAULT_MODEL,
                      model_help: str | None = None, batch_help: str = "sequences per model call") -> None:
    """The weight options plus --device, --batch, --threads and --fast/--simulate (`fast`: the default)."""
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
    return QAModel.load(model or args.model, args.config, args.device, cache_dir=args.cache_dir, fast=args.fast)
