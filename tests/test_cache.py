"""The weight cache: hits skip the source, every kind of damage is detected and rebuilt, killed and concurrent
converters never leave a cache that loads wrongly. All on `tiny` (a cache is ~5 MB, a conversion ~1 s)."""

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from safetensors.torch import load_file

from bertl11 import QAModel, UserError, get_run_config, resolve_model
from bertl11.cache import _read_verified, _tensors_in, cache_directory, load, load_or_convert
from bertl11.cli import main as cli_main
from bertl11.verified import MANIFEST, StaleCache, Staleness

CONFIG = get_run_config("BFLOAT8_B-SHARDED")


@pytest.fixture(scope="module")
def source():
    return resolve_model("tiny")


def untouchable(source):
    """The same model, whose weights must not be read."""

    def refuse():
        raise AssertionError("the source's state dict was read")

    return dataclasses.replace(source, _load_state_dict=refuse)


def test_hit_does_not_read_the_source(source, tmp_path):
    with pytest.raises(StaleCache, match="no cache at") as absent:
        load(cache_directory(tmp_path, source, CONFIG), source, CONFIG)
    assert absent.value.kind is Staleness.ABSENT
    first = QAModel.load(source, CONFIG.name, cache_dir=tmp_path)
    assert not first.load_report.cache_hit and first.load_report.detail.startswith("converted into")
    second = QAModel.load(untouchable(source), CONFIG.name, cache_dir=tmp_path)
    assert second.load_report.cache_hit
    ids = torch.randint(0, 30000, (2, 24), generator=torch.Generator().manual_seed(0))
    args = (ids, torch.zeros_like(ids), torch.ones_like(ids))
    for a, b in zip(first(*args), second(*args)):
        assert torch.equal(a, b)


def test_stores_bfloat8_b_packed_and_padded(source, tmp_path):
    load_or_convert(source, CONFIG, tmp_path)
    tensors = json.loads((cache_directory(tmp_path, source, CONFIG) / MANIFEST).read_text())["tensors"]
    qkv = tensors["bert.encoder.layer.0.attention.self.qkv.weight"]
    assert (qkv["dtype"], qkv["shape"]) == ("bfloat8_b", [128, 384])
    assert qkv["stored_shape"] == [(128 // 32) * (384 // 32) * 1088]  # 1.0625 bytes per value
    head = tensors["qa_outputs.weight"]
    assert head["shape"] == [128, 2] and head["stored_shape"] == [4 * 1088]  # [128, 2] padded to [128, 32]
    assert tensors["bert.embeddings.word_embeddings.weight"]["dtype"] == "bfloat16"
    assert tensors["bert.embeddings.LayerNorm.weight"]["stored_shape"] == [128]  # row-major: unpadded


def truncate(directory):
    path = directory / "layer_01.safetensors"
    path.write_bytes(path.read_bytes()[:-100])


def flip_a_bit(directory):
    path = directory / "layer_00.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def remove_a_file(directory):
    (directory / "qa_outputs.safetensors").unlink()


def edit_manifest(**changes):
    def edit(directory):
        manifest = json.loads((directory / MANIFEST).read_text())
        manifest.update(changes)
        (directory / MANIFEST).write_text(json.dumps(manifest))

    return edit


def resign(directory, file_name, data):
    """Replace a file and record its new size and sha256, as if the cache had been written that way."""
    (directory / file_name).write_bytes(data)
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest["files"][file_name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (directory / MANIFEST).write_text(json.dumps(manifest))


def overrun_offsets(directory):
    """A well-formed safetensors header whose last tensor claims bytes past the end of the file."""
    data = (directory / "qa_outputs.safetensors").read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    name = max((n for n in header if n != "__metadata__"), key=lambda n: header[n]["data_offsets"][1])
    header[name]["data_offsets"][1] += 64
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    resign(directory, "qa_outputs.safetensors", len(text).to_bytes(8, "little") + text + data[8 + length :])


DAMAGE = {
    "truncated file": (truncate, Staleness.TRUNCATED, "layer_01.safetensors has"),
    "bit flip": (flip_a_bit, Staleness.CORRUPTED, "layer_00.safetensors does not match its sha256"),
    "missing file": (remove_a_file, Staleness.MISSING, "qa_outputs.safetensors is missing"),
    "other format version": (edit_manifest(format_version=0), Staleness.HEADER, "cache format version 0"),
    "other config": (edit_manifest(run_config="BFLOAT16-DRAM"), Staleness.HEADER, "built for config BFLOAT16-DRAM"),
    "other source": (edit_manifest(source_fingerprint="0" * 64), Staleness.HEADER, "source fingerprint differs"),
    "unreadable file, re-signed": (overrun_offsets, Staleness.MALFORMED, "qa_outputs.safetensors is not a readable safetensors file"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damage_is_detected_reported_and_rebuilt(source, tmp_path, damage):
    harm, kind, reason = DAMAGE[damage]
    good, _ = load_or_convert(source, CONFIG, tmp_path)
    directory = cache_directory(tmp_path, source, CONFIG)
    harm(directory)
    with pytest.raises(StaleCache, match=reason) as stale:
        load(directory, source, CONFIG)
    assert stale.value.kind is kind
    model = QAModel.load(source, CONFIG.name, cache_dir=tmp_path)
    report = model.load_report
    assert not report.cache_hit and reason in report.detail and "\n" not in report.detail
    harm(directory)
    flat, outcome = load_or_convert(source, CONFIG, tmp_path)
    assert not outcome.hit and outcome.stale.kind is kind and reason in str(outcome.stale)
    rebuilt = load(directory, untouchable(source), CONFIG)
    assert rebuilt.keys() == good.keys() and all(torch.equal(rebuilt[k], good[k]) for k in good)


@pytest.mark.parametrize("config", ["FLOAT32", "BFLOAT16-DRAM", "BFLOAT8_B-SHARDED"])
def test_cache_files_read_as_safetensors_reads_them(source, tmp_path, config):
    """The cache reads its files without copying them (`_tensors_in`); the safetensors library must agree."""
    load_or_convert(source, get_run_config(config), tmp_path)
    directory = cache_directory(tmp_path, source, get_run_config(config))
    manifest = json.loads((directory / MANIFEST).read_text())
    for file_name, entry in manifest["files"].items():
        ours = _tensors_in(_read_verified(directory / file_name, entry), file_name)
        theirs = load_file(directory / file_name)
        assert ours.keys() == theirs.keys()
        for name, t in theirs.items():
            assert ours[name].dtype == t.dtype and torch.equal(ours[name], t), name


def test_a_changed_source_is_rebuilt(source, tmp_path):
    """A source whose fingerprint changed (new weights) does not get the old weights."""
    load_or_convert(source, CONFIG, tmp_path)
    changed_weights = {k: v + 1.0 for k, v in source.state_dict().items()}
    changed = dataclasses.replace(source, fingerprint="f" * 64, _load_state_dict=lambda: changed_weights)
    flat, outcome = load_or_convert(changed, CONFIG, tmp_path)
    assert not outcome.hit and "source fingerprint differs" in outcome.detail
    assert load_or_convert(changed, CONFIG, tmp_path)[1].hit


CONVERTER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import bertl11.cache as cache
    import bertl11.verified as verified
    from bertl11 import get_run_config, resolve_model

    cache_dir, config, pause_after, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    write = verified.write_file
    written = []

    def write_then_maybe_pause(path, data):
        write(path, data)
        written.append(path.name)
        print("wrote", path.name, flush=True)
        if len(written) == pause_after:
            time.sleep(600)  # the test kills us here

    verified.write_file = write_then_maybe_pause
    source = resolve_model("tiny")
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.01)
    flat, outcome = cache.load_or_convert(source, get_run_config(config), cache_dir)
    print("hit" if outcome.hit else "converted", outcome.detail, flush=True)
    """
)


def start_converter(cache_dir, pause_after, go):
    return subprocess.Popen(
        [sys.executable, "-c", CONVERTER, str(cache_dir), CONFIG.name, str(pause_after), str(go)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def read_until(process, prefix, timeout=120):
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
        if line.startswith(prefix):
            return lines
    raise AssertionError(f"converter never printed {prefix!r}: {lines}")


@pytest.mark.parametrize("pause_after", [1, 5], ids=["after the first file", "after the manifest"])
def test_killed_converter_leaves_no_cache_that_loads(source, tmp_path, pause_after):
    """tiny writes 4 tensor files, then the manifest (write 5), then renames the directory into place."""
    go = tmp_path / "go"
    go.touch()
    converter = start_converter(tmp_path, pause_after, go)
    try:
        writes = 0
        while writes < pause_after:  # the converter sleeps once it has printed this many writes
            writes += sum(line.startswith("wrote") for line in read_until(converter, "wrote"))
        converter.send_signal(signal.SIGKILL)
    finally:
        converter.kill()
        converter.wait()
    directory = cache_directory(tmp_path, source, CONFIG)
    with pytest.raises(StaleCache, match="no cache at"):
        load(directory, source, CONFIG)
    assert any(directory.parent.glob(".safetensors.tmp-*")), "the killed converter's staging directory should remain"
    flat, outcome = load_or_convert(source, CONFIG, tmp_path)
    assert not outcome.hit and load(directory, untouchable(source), CONFIG).keys() == flat.keys()
    assert not any(directory.parent.glob(".safetensors.*-*")), "leftovers are cleaned by the next conversion"


def test_two_concurrent_converters_convert_once(source, tmp_path):
    go = tmp_path / "go"
    converters = [start_converter(tmp_path, 0, go) for _ in range(2)]
    try:
        for converter in converters:
            read_until(converter, "ready")
        go.touch()
        results = [read_until(converter, ("hit", "converted"))[-1] for converter in converters]
        assert [c.wait(timeout=60) for c in converters] == [0, 0]
    finally:
        for converter in converters:
            converter.kill()
            converter.wait()
    assert sorted(r.split()[0] for r in results) == ["converted", "hit"], results
    directory = cache_directory(tmp_path, source, CONFIG)
    assert load(directory, untouchable(source), CONFIG)
    assert not any(directory.parent.glob(".safetensors.*-*"))


def test_convert_command(tmp_path, capsys):
    assert cli_main(["convert", "--model", "tiny", "--config", "BFLOAT16-DRAM", "--cache-dir", str(tmp_path)]) == 0
    assert "converted into" in capsys.readouterr().out
    assert cli_main(["convert", "--model", "tiny", "--config", "BFLOAT16-DRAM", "--cache-dir", str(tmp_path)]) == 0
    assert "cache is valid" in capsys.readouterr().out
    assert cli_main(["convert", "--model", "nonsense", "--cache-dir", str(tmp_path)]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_unwritable_cache_dir_is_a_one_line_error(source, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot write the weight cache"):
        load_or_convert(source, CONFIG, blocker / "cache")
