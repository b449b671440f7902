"""Writing files so that a reader, or a crash, never sees half of one; and one writer at a time."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import sys
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path

from .errors import UserError


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp"):
    """A temporary path beside `path` to write to; it replaces `path` only if the block succeeds. `suffix`
    ends the temporary name, for writers that insist on an extension (ttnn.dump_tensor wants .tensorbin)."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(handle)
    os.chmod(temporary, 0o644)  # mkstemp makes it private; these are ordinary files
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


@contextmanager
def exclusive_lock(path: str | Path, holder: str, *, wait: bool):
    """An fcntl.flock on the file `path` for the block. The kernel drops it when its holder dies, so a
    SIGKILLed holder leaves no stale lock. Held elsewhere: wait for it (saying so on stderr), or, with
    wait=False, a one-line `UserError`. `holder` names who holds it ("another process converting into X")."""
    with open(path, "a+b") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise UserError(f"{holder} holds the lock {path}; wait for it to finish") from None
            print(f"waiting for {holder} ...", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def check_output_path(path: str | Path, option: str) -> None:
    """A one-line `UserError` unless `path` can be written as a file (`option` names where it came from)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {path} is a directory")
    if not path.parent.is_dir():
        raise UserError(f"{option} {path}: directory {path.parent} does not exist")


def atomic_output(path: str | Path, option: str):
    """`atomic_path` for a path the user gave with `option`, checked first."""
    check_output_path(path, option)
    return atomic_path(path)


def write_csv(path: str | Path, rows: list[dict], option: str = "--csv") -> None:
    """Rows to `path` atomically: a reader sees the old file or the whole new one."""
    with atomic_output(path, option) as temporary, open(temporary, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_json(path: str | Path, data) -> None:
    write_json_files({path: data})


def write_json_files(documents: dict) -> None:
    """path -> JSON document, all written to temporaries first and then renamed into place one after the
    other, so that a failure while writing leaves every old file as it was (not a new one beside old ones)."""
    with ExitStack() as stack:
        for path, data in documents.items():
            temporary = stack.enter_context(atomic_path(path))
            Path(temporary).write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")


def read_json(path: str | Path, what: str = "file", max_bytes: int | None = None):
    """A JSON document from disk, or a one-line `UserError` saying what is wrong with the file."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory, not a JSON file")
    try:
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise UserError(f"{what} {path} is {size / 2**20:.1f} MiB; it must be under {max_bytes // 2**20} MiB")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist") from None
    except OSError as error:
        raise UserError(f"cannot read {what} {path}: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UserError(f"{what} {path} is not valid UTF-8 (byte 0x{raw[error.start]:02x} at offset {error.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{what} {path} is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    except RecursionError:
        raise UserError(f"{what} {path} is nested too deeply to be a usable JSON document") from None
