"""The contract environment (.venv-tt: Python 3.12, ttnn 0.81, no torch), and the replay's summary line."""

import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TT_PYTHON = Path(os.environ.get("BERTL11_TT_PYTHON", REPO / ".venv-tt" / "bin" / "python"))
# ttnn's mock mode: a Wormhole n150 descriptor, so host-side work runs without a card (mock_cluster/README.md).
MOCK_CLUSTER = HERE / "mock_cluster" / "wormhole_N150.yaml"
SUMMARY = "ttnn_replay_summary"


@pytest.fixture(scope="session")
def tt_python():
    if not TT_PYTHON.exists():
        if os.environ.get("CI"):
            pytest.fail(f"the contract environment {TT_PYTHON} is missing (make .venv-tt/.installed)")
        pytest.skip(f"no ttnn contract environment at {TT_PYTHON} (make .venv-tt/.installed builds it)")
    return TT_PYTHON


def tt_environment(mock: bool = True) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TT_METAL_MOCK_CLUSTER_DESC_PATH"}
    if mock:
        env["TT_METAL_MOCK_CLUSTER_DESC_PATH"] = str(MOCK_CLUSTER)
    return env


def pytest_terminal_summary(terminalreporter):
    """The replay tier's one line (test_ttnn_replay.py records it as a user property; xdist forwards those)."""
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, value in getattr(report, "user_properties", ()):
                if name == SUMMARY and getattr(report, "when", "call") == "call":
                    terminalreporter.write_line(value)
