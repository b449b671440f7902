"""Where the contract environment is (.venv-tt: Python 3.12, ttnn 0.81, no torch) and how to run ttnn there."""

import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TT_PYTHON = Path(os.environ.get("BERTL11_TT_PYTHON", REPO / ".venv-tt" / "bin" / "python"))
# ttnn's mock mode: a Wormhole n150 descriptor, so host-side work runs without a card (mock_cluster/README.md).
MOCK_CLUSTER = HERE / "mock_cluster" / "wormhole_N150.yaml"


def tt_environment(mock: bool = True) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TT_METAL_MOCK_CLUSTER_DESC_PATH"}
    if mock:
        env["TT_METAL_MOCK_CLUSTER_DESC_PATH"] = str(MOCK_CLUSTER)
    return env


@pytest.fixture(scope="session")
def tt_python():
    """The contract environment's Python (test modules import this fixture)."""
    if not TT_PYTHON.exists():
        if os.environ.get("CI"):
            pytest.fail(f"the contract environment {TT_PYTHON} is missing (make .venv-tt/.installed)")
        pytest.skip(f"no ttnn contract environment at {TT_PYTHON} (make .venv-tt/.installed builds it)")
    return TT_PYTHON
