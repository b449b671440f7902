"""`--device tt` without ttnn, without a card, or on a Grayskull: one clear line each (no ttnn needed here).

The fake ttnn below raises what the real ttnn 0.81 raises without a card; test_ttnn_contract.py checks that
against the real package."""

from types import SimpleNamespace

import pytest

from bertl11.backends.ttnn import open_chips
from bertl11.config import get_run_config
from bertl11.errors import UserError
from bertl11.runtime import make_ops
from bertl11.sources import resolve_model


def test_missing_ttnn_is_a_user_error():
    pytest.importorskip("torch")
    try:
        import ttnn  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("ttnn is installed in this environment")
    with pytest.raises(UserError, match="needs the ttnn package"):
        make_ops(resolve_model("tiny"), get_run_config("BFLOAT8_B-SHARDED"), "tt")


def _no_chips():
    raise RuntimeError("TT_FATAL @ /project/tt_metal/llrt/tt_cluster.cpp:129: num_chips > 0\ninfo:\nNo chips detected in the cluster")


def test_no_card_is_a_user_error():
    fake = SimpleNamespace(GetNumAvailableDevices=_no_chips, get_arch_name=lambda: "invalid")
    with pytest.raises(UserError, match="no Tenstorrent card found \\(no chips detected\\)"):
        open_chips(fake)


def test_grayskull_is_refused_before_opening():
    def must_not_open(**kwargs):
        raise AssertionError("opened a Grayskull")

    fake = SimpleNamespace(GetNumAvailableDevices=lambda: 1, get_arch_name=lambda: "grayskull", open_mesh_device=must_not_open)
    with pytest.raises(UserError, match="Grayskull.*v0.55"):
        open_chips(fake)
