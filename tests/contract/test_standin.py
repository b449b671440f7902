"""The ttnn backend's calls, recorded by the stand-in (ttnn_standin.py): what a card would be asked to do.

These need torch and bertl11 only; test_ttnn_replay.py replays the same recordings against the real ttnn.
"""

import importlib.metadata
import json

import pytest

from bertl11.config import TT_CONFIGS, get_run_config
from bertl11.errors import UserError
from bertl11.plan import PlanError
from bertl11.verified import MANIFEST
from ttnn_standin import StandinTtnn, model_shape, record_forward, recording

LARGE = model_shape("large")
INTERLEAVED_CONFIGS = [c for c in TT_CONFIGS if get_run_config(c).memory != "SHARDED"]


def calls_of(standin, function):
    return [c for c in standin.calls if c["function"] == function]


def test_dumps_go_through_a_tensorbin_temporary(tmp_path):
    """E1: ttnn.dump_tensor refuses any path not ending in .tensorbin (ttnn/operations/core.py), so the
    atomic write's temporary must end in it too; the final file replaces it."""
    standin = StandinTtnn()
    record_forward(standin, model_shape("tiny"), "BFLOAT8_B-L1", 8, tmp_path, passes=1)
    dumps = calls_of(standin, "dump_tensor")
    assert dumps and all(c["args"][0].endswith(".tensorbin") for c in dumps), dumps[0]["args"][0]
    written = sorted(p.name for p in (tmp_path / "wormhole_b0").iterdir())
    assert MANIFEST in written and not [n for n in written if n.startswith(".")]  # no temporaries left
    assert len(written) == len(dumps) + 1


@pytest.mark.parametrize("config", INTERLEAVED_CONFIGS)
def test_interleaved_split_gets_rank_3(config, tmp_path):
    """E2: ttnn.transformer.split_query_key_value_and_split_heads takes [B, S, 3H] only (rank 3)."""
    standin = StandinTtnn()
    record_forward(standin, LARGE, config, 8, tmp_path, passes=1)
    splits = calls_of(standin, "transformer.split_query_key_value_and_split_heads")
    assert len(splits) == LARGE.num_layers
    assert {tuple(c["args"][0]["tensor"]["shape"]) for c in splits} == {(8, 384, 3 * 1024)}


def test_sharded_tiny_is_refused_in_one_line(tmp_path):
    """E3: the sharded split moves two heads per core; a model that puts another number there gets a
    one-line error before any device work, not a TT_FATAL at layer 0."""
    standin = StandinTtnn()
    with pytest.raises(PlanError, match="2 heads per core") as refused:
        record_forward(standin, model_shape("tiny"), "BFLOAT8_B-SHARDED", 8, tmp_path, passes=1)
    assert "\n" not in str(refused.value)
    assert not calls_of(standin, "embedding")  # refused before the forward touched the card


def test_cache_header_names_the_installed_ttnn(tmp_path, monkeypatch):
    """C1: ttnn 0.81 has no __version__; the header reads the package metadata, so an upgrade re-converts."""
    real_version = importlib.metadata.version
    installed = {"ttnn": "0.81.1"}
    monkeypatch.setattr(importlib.metadata, "version", lambda name: installed.get(name) or real_version(name))
    shape = model_shape("tiny")
    record_forward(StandinTtnn(), shape, "BFLOAT16-DRAM", 8, tmp_path, passes=1)
    header = json.loads((tmp_path / "wormhole_b0" / MANIFEST).read_text())["header"]
    assert header["ttnn"] == "0.81.1"
    again = StandinTtnn()
    record_forward(again, shape, "BFLOAT16-DRAM", 8, tmp_path, passes=1)
    assert calls_of(again, "load_tensor") and not calls_of(again, "dump_tensor")  # same ttnn: the cache is used
    installed["ttnn"] = "0.82.0"
    upgraded = StandinTtnn()
    record_forward(upgraded, shape, "BFLOAT16-DRAM", 8, tmp_path, passes=1)
    assert calls_of(upgraded, "dump_tensor") and not calls_of(upgraded, "load_tensor")


def test_embeddings_add_positions_inside_the_layernorm(tmp_path):
    """N1: word + token type in one add; the position embedding is the layernorm's residual input."""
    standin = StandinTtnn()
    record_forward(standin, model_shape("tiny"), "BFLOAT8_B-L1", 8, tmp_path, passes=1)
    embedding_calls = [c for c in standin.calls if " embeddings " in c["where"]]
    assert [c["function"] for c in embedding_calls].count("add") == 1
    norm = next(c for c in embedding_calls if c["function"] == "layer_norm")
    assert norm["kwargs"]["residual_input_tensor"]["tensor"]["shape"] == [8, 384, 128]


@pytest.mark.parametrize("config", ["BFLOAT8_B-SHARDED", "BFLOAT8_B-L1"])
def test_a_forward_releases_what_it_allocates(config, tmp_path):
    """Every device tensor a forward allocates outside the weights is released by the end of the batch:
    anything left would stay in L1 or DRAM, batch after batch, until an allocation fails on the card."""
    standin = StandinTtnn()
    record_forward(standin, LARGE, config, 8, tmp_path, passes=1)
    leaked = standin.leaked()
    assert not leaked, [t.buffer["where"] for t in leaked[:5]]


def test_unknown_grid_gets_its_own_entry():
    """R2 at the backend: a card reporting a grid no entry has is planned on that grid."""
    standin = StandinTtnn("wormhole_b0", (7, 7))
    with recording(standin):
        from bertl11.backends.ttnn import open_tt_device

        _, card = open_tt_device(standin)
    assert card.grid == (7, 7) and "7x7" in card.title


def test_unknown_architecture_is_refused():
    with pytest.raises(UserError, match="ttnn opened a quasar chip"):
        from bertl11.backends.ttnn import open_tt_device

        open_tt_device(StandinTtnn("quasar", (8, 8)))
