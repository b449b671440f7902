"""The `bertl11` command line: routes each command to its module in `bertl11.commands`.

Each command module exposes `add_arguments(parser)` and `run(args) -> int`; shared options live in
`commands/options.py`. A `UserError` anywhere, a usage error included, becomes one line on stderr and exit 2;
Ctrl-C is one line and exit 130. Anything else is a bug and shows Python's traceback (exit 1).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from . import __version__
from .errors import UserError

# name -> one-line help; the command lives in bertl11.commands.<name>
COMMANDS = {
    "demo": "answer one batch of questions from a JSON file, with timings",
    "squad": "run the model over SQuAD v2 and score it",
    "score": "score SQuAD v2 predictions with the official semantics",
    "finetune": "fine-tune an HF BERT encoder for SQuAD v2 question answering",
    "soup": "average the weights of fine-tuned models into one (a model soup)",
    "convert": "convert HF weights into the on-disk weight cache",
    "perf": "end-to-end throughput, optionally side by side with HF",
    "profile": "time every op of every layer; CSV and bar chart",
    "plan": "the Tensix sharding plan for a card, batch and config",
    "estimate": "predicted device time of every op on a Tenstorrent card, or of one matmul",
    "app": "serve the QA app as a web page (Voila)",
    "doctor": "versions, CPU capability, CUDA devices, the GEMM each config uses and why, the cache",
}


class Parser(argparse.ArgumentParser):
    """argparse, except that a usage error is a `UserError` (one line, exit 2) rather than its usage block."""

    def error(self, message: str):
        raise UserError(f"{message} (bertl11 {self.prog.removeprefix('bertl11 ')} --help lists the options)"
                        if self.prog != "bertl11" else f"{message} (bertl11 --help lists the commands)")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """All commands with their help; only `command`'s module is imported and given its arguments."""
    parser = Parser(prog="bertl11", description="BERT-large SQuAD v2 question answering (metal_BERT_large_11 style).")
    parser.add_argument("--version", action="version", version=f"bertl11 {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(f"bertl11.commands.{name}")
            module.add_arguments(sub)
            sub.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Known before parsing, because an option value out of range raises UserError while parsing (`commands.options.count`).
    command = next((a for a in argv if a in COMMANDS), None)
    prefix = " ".join(["bertl11", *([command] if command else [])])
    try:
        args = build_parser(command).parse_args(argv)
        return int(args.handler(args) or 0)
    except UserError as error:
        if not error.quiet:
            print(f"{prefix}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`bertl11 estimate | head`): stop quietly, as other command-line tools do. Python
        # would report the pipe again when it flushes stdout at exit, so stdout goes to /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
