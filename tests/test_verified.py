"""Verified directories (bertl11.verified), as the TT backend's .tensorbin cache uses them.

The safetensors cache's use is covered by test_cache.py; here a TtnnOps without a device (no ttnn needed: only its
manifest methods run) writes and re-reads a manifest over plain files, and every kind of damage is refused.
"""

import json
from types import SimpleNamespace

import pytest

from bertl11.backends.ttnn import TtnnOps
from bertl11.config import get_run_config
from bertl11.verified import MANIFEST, StaleCache, file_entry, read_manifest, verify_files

GROUPS = 8


@pytest.fixture
def tensorbin_cache(tmp_path):
    """A directory of two files and the manifest the TT backend writes for them."""
    backend = object.__new__(TtnnOps)  # no device: __init__ would open one
    backend.ttnn = SimpleNamespace(__version__="0.81.1")
    backend.run_config = get_run_config("BFLOAT8_B-SHARDED")
    backend.source_manifest = tmp_path / "source-manifest.json"
    backend.source_manifest.write_text("{}")
    directory = tmp_path / "wormhole_b0"
    directory.mkdir()
    entries = {}
    for name, data in (("a_BFLOAT8_B.tensorbin", b"\x01" * 3000), ("b_BFLOAT16.tensorbin", b"\x02" * 500)):
        (directory / name).write_bytes(data)
        entries[name] = file_entry(directory / name)
    backend._write_manifest(directory, GROUPS, entries)
    return backend, directory


def test_a_written_cache_verifies(tensorbin_cache):
    backend, directory = tensorbin_cache
    manifest = backend._read_manifest(directory, GROUPS)
    assert manifest is not None and set(manifest["files"]) == {"a_BFLOAT8_B.tensorbin", "b_BFLOAT16.tensorbin"}


def _flip(directory):
    path = directory / "a_BFLOAT8_B.tensorbin"
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, reason", [
    (lambda d: (d / "b_BFLOAT16.tensorbin").write_bytes(b"\x02" * 499), "b_BFLOAT16.tensorbin has 499 bytes"),
    (_flip, "a_BFLOAT8_B.tensorbin does not match its sha256"),
    (lambda d: (d / "a_BFLOAT8_B.tensorbin").unlink(), "a_BFLOAT8_B.tensorbin is missing"),
])
def test_damaged_files_are_refused(tensorbin_cache, damage, reason):
    backend, directory = tensorbin_cache
    damage(directory)
    with pytest.raises(StaleCache, match=reason):
        verify_files(directory, read_manifest(directory)["files"])
    assert backend._read_manifest(directory, GROUPS) is None


def test_another_header_or_manifest_is_refused(tensorbin_cache, tmp_path):
    backend, directory = tensorbin_cache
    assert backend._read_manifest(directory, GROUPS // 2) is None, "other QKV groups"
    backend.source_manifest.write_text('{"rebuilt": true}')
    assert backend._read_manifest(directory, GROUPS) is None, "the safetensors cache it came from changed"
    (directory / MANIFEST).write_text("[1, 2]")
    with pytest.raises(StaleCache, match="not a JSON object"):
        read_manifest(directory)
    assert backend._read_manifest(directory, GROUPS) is None
    with pytest.raises(StaleCache, match="no cache at"):
        read_manifest(tmp_path / "nowhere")
    (directory / MANIFEST).write_text(json.dumps({"header": {}, "files": {}})[:-3])
    assert backend._read_manifest(directory, GROUPS) is None
