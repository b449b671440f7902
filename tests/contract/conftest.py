"""The contract environment fixture, and the replay's summary line at the end of the run."""

import os

import pytest

from tt_env import SUMMARY, TT_PYTHON


@pytest.fixture(scope="session")
def tt_python():
    if not TT_PYTHON.exists():
        if os.environ.get("CI"):
            pytest.fail(f"the contract environment {TT_PYTHON} is missing (make .venv-tt/.installed)")
        pytest.skip(f"no ttnn contract environment at {TT_PYTHON} (make .venv-tt/.installed builds it)")
    return TT_PYTHON


def pytest_terminal_summary(terminalreporter):
    """The replay tier's one line (test_ttnn_replay.py records it as a user property; xdist forwards those)."""
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, value in getattr(report, "user_properties", ()):
                if name == SUMMARY and getattr(report, "when", "call") == "call":
                    terminalreporter.write_line(value)
