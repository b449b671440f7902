"""Verified directories: files a manifest vouches for, the scheme both weight caches use.

`manifest.json` lists every file with its size and sha256, beside a header saying what the files were made
from; it is written last, so a directory without one is incomplete. A reader checks the header and every
file before using any of them, and a failed check is a `StaleCache` whose message says why in one line
(the caller rebuilds). The safetensors cache (`cache.py`) hashes the bytes it reads anyway, so it checks
them with `check_file`; the TT backend's .tensorbin cache, which ttnn reads itself, uses `verify_files`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

MANIFEST = "manifest.json"


class StaleCache(Exception):
    """A cache that cannot be used as it is; the message says why, in one line."""


def sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(path: Path) -> dict:
    """A written file's manifest entry."""
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def read_manifest(directory: Path) -> dict:
    """The directory's manifest as a JSON object, or `StaleCache`."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except FileNotFoundError:
        raise StaleCache(f"no cache at {directory}") from None
    except (OSError, ValueError) as error:
        raise StaleCache(f"unreadable manifest ({error})") from None
    if not isinstance(manifest, dict):
        raise StaleCache("unreadable manifest (not a JSON object)")
    return manifest


def check_size(name: str, size: int, entry: dict) -> None:
    if size != entry["bytes"]:
        raise StaleCache(f"{name} has {size} bytes, the manifest says {entry['bytes']} (truncated or replaced)")


def check_digest(name: str, digest: str, entry: dict) -> None:
    if digest != entry["sha256"]:
        raise StaleCache(f"{name} does not match its sha256 (corrupted)")


def verify_files(directory: Path, files: dict[str, dict]) -> None:
    """Every listed file exists with its size and sha256, or `StaleCache` naming the first that does not."""
    for name, entry in files.items():
        path = directory / name
        try:
            check_size(name, path.stat().st_size, entry)
        except FileNotFoundError:
            raise StaleCache(f"{name} is missing") from None
        check_digest(name, sha256_file(path), entry)
