"""Verified directories: files a manifest vouches for, written whole by one writer at a time.

`manifest.json` lists every file with its size and sha256, beside a header saying what the files were made
from (model, run config, format version, ...); it is written last, so a directory without one is
incomplete. A reader checks the header and every file before using any of them; a failed check is a
`StaleCache` whose `kind` says what was wrong (`Staleness`) and whose message says it in one line, and the
directory is rebuilt. A writer holds a lock beside the directory (`files.exclusive_lock`), so a second
writer waits and then loads the first one's result, and writes into a private staging directory that is
fsynced and renamed into place whole (`staged_directory`): at every instant the directory is complete or
absent, even when its writer is SIGKILLed. Readers take no lock: they verify every file.

Three users: the safetensors weight cache (`cache.py`, which hashes the bytes it reads anyway), the TT
backend's .tensorbin cache (which ttnn reads itself, after `VerifiedDirectory.verify`) and the fast path's
int8 linears (`quantize.py`); the shipped model's manifest checks its files with `verify_file`.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, TypeVar

from .errors import UserError
from .files import exclusive_lock

MANIFEST = "manifest.json"
CHUNK_BYTES = 1 << 20
T = TypeVar("T")


class Staleness(enum.Enum):
    """Why a verified directory cannot be used as it is (and is rebuilt)."""

    ABSENT = "absent"  # no manifest: never written, or its writer died before finishing
    MALFORMED = "malformed"  # the manifest, or a file it vouches for, does not read as what it claims
    HEADER = "header mismatch"  # made from something else: another model, config, format version, ...
    MISSING = "missing file"
    TRUNCATED = "truncated"  # a file's size differs from the manifest's
    CORRUPTED = "corrupted"  # a file's sha256 differs from the manifest's
    REQUESTED = "rebuild requested"


class UnwritableCache(UserError):
    """A verified directory that must be (re)built where it cannot be written (a read-only cache root): a
    one-line `UserError` unless the caller can do without the directory (`quantize.py`, `compiled.py`)."""


class StaleCache(Exception):
    """A cache that cannot be used as it is: `kind` says why, the message says it in one line."""

    def __init__(self, kind: Staleness, message: str):
        super().__init__(message)
        self.kind = kind


def hash_file(path: Path, digest=None):
    """`digest` (a new sha256 unless given) updated with a file's bytes, read in chunks."""
    digest = hashlib.sha256() if digest is None else digest
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest


def sha256_file(path: Path) -> str:
    return hash_file(path).hexdigest()


def sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def file_entry(path: Path) -> dict:
    """A written file's manifest entry."""
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def check_size(name: str, size: int, entry: dict) -> None:
    if size != entry["bytes"]:
        raise StaleCache(Staleness.TRUNCATED,
                         f"{name} has {size} bytes, the manifest says {entry['bytes']} (truncated or replaced)")


def check_digest(name: str, digest: str, entry: dict) -> None:
    if digest != entry["sha256"]:
        raise StaleCache(Staleness.CORRUPTED, f"{name} does not match its sha256 (corrupted)")


def verify_file(path: Path, entry: dict) -> None:
    """`path` exists with the entry's size (where it records one) and sha256, or `StaleCache` saying which
    check failed."""
    try:
        if "bytes" in entry:
            check_size(path.name, path.stat().st_size, entry)
        check_digest(path.name, sha256_file(path), entry)
    except FileNotFoundError:
        raise StaleCache(Staleness.MISSING, f"{path.name} is missing") from None


def read_verified(path: Path, entry: dict, into: memoryview | None = None) -> memoryview:
    """A file's bytes once its size and sha256 match `entry`: read into `into` (a writable buffer of at least
    the entry's size) when given, else into new memory. The file is read once, and hashed from memory."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            check_size(path.name, size, entry)
            view = memoryview(bytearray(size)) if into is None else into.cast("B")[:size]
            filled = 0
            while filled < size and (count := f.readinto(view[filled:])):
                filled += count
    except FileNotFoundError:
        raise StaleCache(Staleness.MISSING, f"{path.name} is missing") from None
    if filled != size:
        raise StaleCache(Staleness.TRUNCATED, f"{path.name} shrank while being read")
    check_digest(path.name, sha256_bytes(view), entry)
    return view


def read_manifest(directory: Path) -> dict:
    """The directory's manifest as a JSON object, or `StaleCache`."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except FileNotFoundError:
        raise StaleCache(Staleness.ABSENT, f"no cache at {directory}") from None
    except (OSError, ValueError) as error:
        raise StaleCache(Staleness.MALFORMED, f"unreadable manifest ({error})") from None
    if not isinstance(manifest, dict):
        raise StaleCache(Staleness.MALFORMED, "unreadable manifest (not a JSON object)")
    return manifest


def write_file(path: Path, data: bytes) -> None:
    """One file of a staged directory (`staged_directory` fsyncs it with the rest)."""
    with open(path, "wb") as f:
        f.write(data)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(directory: Path) -> None:
    """Every file and directory under `directory`, deepest first, so its contents reach the disk before the rename."""
    for parent, _, files in os.walk(directory, topdown=False):
        for name in files:
            _fsync(Path(parent) / name)
        _fsync(Path(parent))


def _swap_into_place(staging: Path, target: Path) -> None:
    """Replace `target` by `staging` with renames only: at every instant it is the old or the new directory,
    or (between the two renames) absent, which a reader takes for a miss."""
    if target.exists():
        retired = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(target, retired)
        os.rename(staging, target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.rename(staging, target)
    _fsync(target.parent)


@contextmanager
def staged_directory(target: Path, mode: int | None = None):
    """A private directory beside `target` (`.<name>.tmp-*`) for the block to write into. When the block
    succeeds, everything in it is fsynced and it replaces `target` whole (with permissions `mode`; private
    otherwise); when it fails, it is removed. A writer killed inside the block leaves only the staging
    directory behind."""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield staging
        if mode is not None:
            os.chmod(staging, mode)
        _fsync_tree(staging)
        _swap_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_leftovers(target: Path) -> None:
    """The staging and retired directories of writers that were killed (call only under the writers' lock)."""
    for leftover in target.parent.glob(f".{target.name}.*-*"):
        shutil.rmtree(leftover, ignore_errors=True)


@dataclass
class Staging:
    """A verified directory being written: its files go into `path`, each recorded for the manifest;
    `extra` holds further manifest fields (the manifest itself is written last, by `load_or_build`)."""

    path: Path
    files: dict[str, dict] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def write(self, name: str, data: bytes) -> None:
        write_file(self.path / name, data)
        self.files[name] = {"sha256": sha256_bytes(data), "bytes": len(data)}

    def add(self, name: str) -> None:
        """Record a file another writer (ttnn.dump_tensor) put in `path`."""
        self.files[name] = file_entry(self.path / name)


@dataclass(frozen=True)
class Outcome:
    """What `load_or_build` did: `hit`, or why it (re)built the directory (`stale`); `detail` in one line."""

    hit: bool
    directory: Path
    detail: str
    stale: StaleCache | None = None


@dataclass(frozen=True)
class VerifiedDirectory:
    """A directory whose manifest vouches for its files and records `header`: what they were made from.

    reasons: for a header field, the one-line reason a differing value gives (found, expected) -> text;
    fields without one say "built for <field> <found>, not <expected>". what: the cache's name in errors.
    """

    path: Path
    header: dict
    reasons: Mapping[str, Callable[[object, object], str]] = field(default_factory=dict)
    what: str = "cache"

    @property
    def lock(self) -> Path:
        """Beside the directory, which a rebuild replaces whole."""
        return self.path.parent / f".{self.path.name}.lock"

    def manifest(self) -> dict:
        """The manifest, once its header matches `header`; the files are not checked yet (`verify` does)."""
        manifest = read_manifest(self.path)
        for key, expected in self.header.items():
            found = manifest.get(key)
            if found != expected:
                reason = self.reasons.get(key, lambda found, expected: f"built for {key} {found!r}, not {expected!r}")
                raise StaleCache(Staleness.HEADER, reason(found, expected))
        return manifest

    def verify(self, required: tuple[str, ...] | list[str] = ()) -> dict:
        """The manifest, once its header matches and every file it lists, `required` among them, has its size
        and sha256."""
        manifest = self.manifest()
        files = manifest.get("files")
        if not isinstance(files, dict):
            raise StaleCache(Staleness.MALFORMED, "malformed manifest (no files)")
        unlisted = [name for name in required if name not in files]
        if unlisted:
            raise StaleCache(Staleness.MALFORMED, f"the manifest lists no {unlisted[0]}")
        try:
            for name, entry in files.items():
                verify_file(self.path / name, entry)
        except (KeyError, TypeError) as error:
            raise StaleCache(Staleness.MALFORMED, f"malformed manifest ({type(error).__name__}: {error})") from None
        return manifest

    def load_or_build(self, load: Callable[[], T], build: Callable[[Staging], T], rebuild: bool = False,
                      built: str = "converted") -> tuple[T, Outcome]:
        """`load()` (which raises `StaleCache` unless the directory verifies) or, failing that, `build` a new
        directory under the writers' lock and return what `build` returned. Another writer may have built it
        while this one waited for the lock: then that one's result is loaded. `built` names the writing in
        the outcome's detail ("converted into ...")."""
        stale = StaleCache(Staleness.REQUESTED, "rebuild requested")
        if not rebuild:
            try:
                return load(), Outcome(True, self.path, f"loaded from {self.path}")
            except StaleCache as error:
                stale = error
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with exclusive_lock(self.lock, f"another process writing {self.path}", wait=True):
                if not rebuild:
                    try:
                        return load(), Outcome(True, self.path, f"loaded from {self.path}, built meanwhile by another process")
                    except StaleCache:
                        pass
                remove_leftovers(self.path)
                with staged_directory(self.path) as path:
                    staging = Staging(path)
                    result = build(staging)
                    manifest = {**self.header, "files": staging.files, **staging.extra}
                    write_file(path / MANIFEST, json.dumps(manifest, indent=1).encode())
        except OSError as error:
            raise UnwritableCache(f"cannot write the {self.what} in {self.path.parent} ({error.strerror or error}); "
                                  "choose another place with --cache-dir or BERTL11_CACHE") from None
        detail = f"{built} into {self.path}" if stale.kind is Staleness.ABSENT else f"rebuilt {self.path}: {stale}"
        return result, Outcome(False, self.path, detail, stale)
