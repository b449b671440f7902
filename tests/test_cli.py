"""The command line's contract: a usage error is one line on stderr and exit 2 (argparse's own errors included),
Ctrl-C is one line and exit 130, a closed pipe ends the command quietly, --version names the package's version."""

import importlib
import subprocess
import sys

import pytest

import bertl11
from bertl11.cli import COMMANDS, main
from conftest import assert_user_error, run_main


@pytest.mark.parametrize("argv, words", [
    ([], ["required: COMMAND", "bertl11 --help"]),
    (["nope"], ["invalid choice: 'nope'", "bertl11 --help"]),
    (["demo", "--batch", "x"], ["--batch", "invalid int value", "bertl11 demo --help"]),
    (["plan", "--card", "e999"], ["--card", "invalid choice", "bertl11 plan --help"]),
    (["score", "--predictions", "p.json", "--no-such-option"], ["unrecognized arguments: --no-such-option", "bertl11 --help"]),
    (["finetune", "--base", "tiny"], ["required", "--data", "--out"]),
])
def test_usage_errors_are_one_line(capsys, argv, words):
    assert_user_error(run_main(capsys, *argv), *words)


def test_ctrl_c_is_one_line_and_130(capsys, monkeypatch):
    module = importlib.import_module("bertl11.commands.plan")

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "run", interrupted)
    assert main(["plan"]) == 130
    assert capsys.readouterr().err == "bertl11 plan: interrupted\n"


def test_a_closed_pipe_is_no_traceback():
    """`bertl11 estimate --json | head -1`: the reader leaves after one line of far more than a pipe holds; the
    command stops without a word."""
    command = subprocess.Popen([sys.executable, "-m", "bertl11", "estimate", "--json"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    first = command.stdout.readline()
    command.stdout.close()
    stderr = command.stderr.read().decode()
    assert command.wait(timeout=120) == 141, stderr
    assert first == b"{\n" and stderr == ""


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"bertl11 {bertl11.__version__}\n"


def test_every_command_has_a_module_with_arguments_and_run():
    for name in COMMANDS:
        module = importlib.import_module(f"bertl11.commands.{name}")
        assert callable(module.add_arguments) and callable(module.run), name
