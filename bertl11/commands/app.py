"""`bertl11 app`: serve the QA app (`bertl11.app`, a page of `widget.QAPage`) with Voila."""

from __future__ import annotations

import importlib.util
import os
import socket
import sys

from ..app import APP_NOTEBOOK, CONFIG_VARIABLE, MODEL_VARIABLE
from ..errors import UserError
from ..sources import OFFLINE_DEFAULT
from . import options

DEFAULT_PORT = 8866  # Voila's own default


def add_arguments(parser) -> None:
    parser.add_argument("--port", type=options.count("--port"), default=DEFAULT_PORT, help="TCP port (default %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s: this machine only)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser at the page")
    options.add_weight_options(parser, model=OFFLINE_DEFAULT)


def check_port_free(host: str, port: int) -> None:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UserError(f"cannot listen on {host}:{port}: {error.strerror}; choose another --port or --host") from None


def voila_command(args) -> list[str]:
    command = [sys.executable, "-m", "voila", str(APP_NOTEBOOK), f"--port={args.port}", f"--Voila.ip={args.host}",
               "--Voila.port_retries=0", "--theme=light"]
    return command + (["--no-browser"] if args.no_browser else [])


def run(args) -> int:
    from ..config import get_run_config
    from ..sources import resolve_model

    if importlib.util.find_spec("voila") is None:
        raise UserError("bertl11 app needs Voila: pip install '.[app]' in a bertl11 checkout")
    get_run_config(args.config)
    resolve_model(args.model)  # an unknown model is a one-line error here, not a broken page
    check_port_free(args.host, args.port)
    environment = {**os.environ, MODEL_VARIABLE: args.model, CONFIG_VARIABLE: args.config}
    if args.cache_dir is not None:
        environment["BERTL11_CACHE"] = str(args.cache_dir)
    print(f"bertl11 app: serving http://{args.host}:{args.port}/ (Ctrl-C stops it)", flush=True)
    # The server replaces this process, so a signal or a kill reaches it directly.
    os.execve(sys.executable, voila_command(args), environment)
    return 0  # not reached
