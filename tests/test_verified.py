"""Verified directories (bertl11.verified): every kind of damage gives its reason kind and a rebuild, writers
serialize, and a staged directory replaces its target whole or not at all.

The weight caches built on it are tested with them: the safetensors cache in test_cache.py, the int8 linears in
test_quantize.py, the TT backend's .tensorbin cache in contract/test_standin.py (it needs the ttnn stand-in).
"""

import json
import threading

import pytest

from bertl11.errors import UserError
from bertl11.verified import (
    MANIFEST, Staleness, StaleCache, VerifiedDirectory, file_entry, read_verified, sha256_file, staged_directory, verify_file,
)

HEADER = {"format_version": 3, "model": "tiny"}
FILES = {"a.bin": b"\x01" * 3000, "b.bin": b"\x02" * 500}


def directory_at(tmp_path, header=HEADER, **reasons):
    return VerifiedDirectory(tmp_path / "cache", header, reasons, "test cache")


class Builder:
    """A `load_or_build` pair over FILES that counts its builds."""

    def __init__(self, directory):
        self.directory, self.builds = directory, 0

    def load(self):
        manifest = self.directory.verify(required=list(FILES))
        return {name: (self.directory.path / name).read_bytes() for name in manifest["files"]}

    def build(self, staging):
        self.builds += 1
        for name, data in FILES.items():
            staging.write(name, data)
        staging.extra["note"] = "written by the test"
        return dict(FILES)

    def run(self, **options):
        return self.directory.load_or_build(self.load, self.build, **options)


@pytest.fixture
def built(tmp_path):
    builder = Builder(directory_at(tmp_path))
    result, outcome = builder.run()
    assert result == FILES and not outcome.hit and outcome.stale.kind is Staleness.ABSENT
    assert outcome.detail == f"converted into {builder.directory.path}"
    return builder


def test_a_written_directory_verifies_and_hits(built):
    path = built.directory.path
    manifest = json.loads((path / MANIFEST).read_text())
    assert {k: manifest[k] for k in HEADER} == HEADER and manifest["note"] == "written by the test"
    assert manifest["files"] == {name: file_entry(path / name) for name in FILES}
    result, outcome = built.run()
    assert result == FILES and outcome.hit and outcome.stale is None and built.builds == 1
    assert sorted(p.name for p in path.parent.iterdir()) == [".cache.lock", "cache"], "no staging directory left"


def flip(path):
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))


def rewrite_manifest(**changes):
    def edit(path):
        manifest = json.loads((path / MANIFEST).read_text())
        (path / MANIFEST).write_text(json.dumps({**manifest, **changes}))

    return edit


DAMAGE = {
    "absent": (lambda p: (p / MANIFEST).unlink(), Staleness.ABSENT, "no cache at"),
    "truncated": (lambda p: (p / "b.bin").write_bytes(b"\x02" * 499), Staleness.TRUNCATED, "b.bin has 499 bytes, the manifest says 500"),
    "corrupted": (lambda p: flip(p / "a.bin"), Staleness.CORRUPTED, "a.bin does not match its sha256"),
    "missing file": (lambda p: (p / "a.bin").unlink(), Staleness.MISSING, "a.bin is missing"),
    "header mismatch": (rewrite_manifest(format_version=2), Staleness.HEADER, "built for format_version 2, not 3"),
    "not a JSON object": (lambda p: (p / MANIFEST).write_text("[1, 2]"), Staleness.MALFORMED, "not a JSON object"),
    "cut manifest": (lambda p: (p / MANIFEST).write_text((p / MANIFEST).read_text()[:-3]), Staleness.MALFORMED, "unreadable manifest"),
    "file left out": (rewrite_manifest(files={}), Staleness.MALFORMED, "the manifest lists no a.bin"),
    "bad entry": (rewrite_manifest(files={"a.bin": {"bytes": 3000}, "b.bin": {"bytes": 500}}), Staleness.MALFORMED, "malformed manifest"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_each_damage_gives_its_reason_and_a_rebuild(built, damage):
    harm, kind, reason = DAMAGE[damage]
    harm(built.directory.path)
    with pytest.raises(StaleCache, match=reason) as stale:
        built.load()
    assert stale.value.kind is kind and "\n" not in str(stale.value)
    result, outcome = built.run()
    assert result == FILES and not outcome.hit and built.builds == 2
    assert outcome.stale.kind is kind and reason in str(outcome.stale)
    if kind is Staleness.ABSENT:
        assert outcome.detail == f"converted into {built.directory.path}"
    else:
        assert outcome.detail.startswith(f"rebuilt {built.directory.path}: ") and reason in outcome.detail
        assert "\n" not in outcome.detail
    assert built.run()[1].hit and built.builds == 2


def test_a_header_field_can_explain_itself(built):
    explained = directory_at(built.directory.path.parent, {**HEADER, "model": "large"},
                             model=lambda found, expected: f"made for {found}, this is {expected}")
    with pytest.raises(StaleCache, match="^made for tiny, this is large$") as stale:
        explained.manifest()
    assert stale.value.kind is Staleness.HEADER


def test_a_requested_rebuild_says_so(built):
    result, outcome = built.run(rebuild=True, built="quantised")
    assert not outcome.hit and outcome.stale.kind is Staleness.REQUESTED and built.builds == 2
    assert outcome.detail == f"rebuilt {built.directory.path}: rebuild requested"


def test_two_writers_serialize(tmp_path):
    """The second writer finds the directory stale, waits on the lock while the first builds, then loads the
    first one's result instead of building again."""
    first, second = Builder(directory_at(tmp_path)), Builder(directory_at(tmp_path))
    first_building, second_missed, release = threading.Event(), threading.Event(), threading.Event()
    outcomes = {}

    def build_slowly(staging):
        first_building.set()
        assert release.wait(30)
        return Builder.build(first, staging)

    def load_and_report(builder, missed):
        def load():
            try:
                return builder.load()
            except StaleCache:
                missed.set()
                raise

        return load

    def run(name, builder, build, missed):
        outcomes[name] = builder.directory.load_or_build(load_and_report(builder, missed), build)

    threads = [threading.Thread(target=run, args=("first", first, build_slowly, threading.Event()))]
    threads[0].start()
    assert first_building.wait(30)
    threads.append(threading.Thread(target=run, args=("second", second, second.build, second_missed)))
    threads[1].start()
    assert second_missed.wait(30), "the second writer should have found no directory"
    release.set()
    for thread in threads:
        thread.join(30)
    assert (first.builds, second.builds) == (1, 0)
    assert not outcomes["first"][1].hit
    assert outcomes["second"][1].hit and outcomes["second"][1].detail.endswith("built meanwhile by another process")
    assert outcomes["second"][0] == FILES


def test_a_failed_build_leaves_the_old_directory(built):
    def fail(staging):
        staging.write("a.bin", b"half")
        raise RuntimeError("conversion failed")

    with pytest.raises(RuntimeError, match="conversion failed"):
        built.directory.load_or_build(built.load, fail, rebuild=True)
    assert built.load() == FILES
    assert [p.name for p in built.directory.path.parent.iterdir() if p.name.startswith(".cache.")] == [".cache.lock"]


def test_an_unwritable_place_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    builder = Builder(VerifiedDirectory(blocker / "cache", HEADER, what="test cache"))
    with pytest.raises(UserError, match=f"cannot write the test cache in {blocker}"):
        builder.run()


def test_staged_directory_replaces_its_target_whole(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with staged_directory(target) as staging:
        assert staging.parent == tmp_path and staging.name.startswith(".model.tmp-")
        (staging / "new.txt").write_text("new")
        (staging / "sub").mkdir()
        (staging / "sub" / "deep.txt").write_text("deep")
        assert (target / "old.txt").exists(), "the target stays as it was until the block succeeds"
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*")) == ["new.txt", "sub", "sub/deep.txt"]
    assert target.stat().st_mode & 0o777 == 0o700, "private unless asked otherwise"
    with staged_directory(target, mode=0o755) as staging:
        (staging / "new.txt").write_text("new")
        (staging / "sub").mkdir()
    assert target.stat().st_mode & 0o777 == 0o755
    with pytest.raises(ValueError):
        with staged_directory(target) as staging:
            (staging / "newer.txt").write_text("newer")
            raise ValueError("writer failed")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt", "sub"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"], "no staging or retired directory left"


def test_single_files_verify_with_or_without_a_size(tmp_path):
    path = tmp_path / "delta.bin"
    path.write_bytes(b"\x05" * 2000)
    verify_file(path, {"sha256": sha256_file(path)})
    assert bytes(read_verified(path, file_entry(path))) == b"\x05" * 2000
    buffer = bytearray(4096)
    assert bytes(read_verified(path, file_entry(path), memoryview(buffer))) == b"\x05" * 2000
    assert buffer[:2000] == b"\x05" * 2000, "read into the buffer it was given"
    with pytest.raises(StaleCache, match="delta.bin does not match its sha256") as stale:
        verify_file(path, {"sha256": "0" * 64})
    assert stale.value.kind is Staleness.CORRUPTED
    with pytest.raises(StaleCache, match="has 2000 bytes, the manifest says 2001") as stale:
        read_verified(path, {"sha256": sha256_file(path), "bytes": 2001})
    assert stale.value.kind is Staleness.TRUNCATED
    with pytest.raises(StaleCache, match="nothing.bin is missing") as stale:
        verify_file(tmp_path / "nothing.bin", {"sha256": "0" * 64})
    assert stale.value.kind is Staleness.MISSING
