"""The on-disk weight cache (what `bertl11 convert` fills).

Converting HF weights means reading or generating the state dict, fusing QKV, transposing the linears,
padding to tiles and rounding to the run configuration's dtypes (`weights.import_state_dict`, `bfp8.pack`).
The cache keeps the result so that later loads skip all of it:

    <cache dir>/<model>/<RUN CONFIG>/safetensors/   this cache: what every backend loads from
        manifest.json                               written last; the cache exists only once it does
        embeddings.safetensors  layer_00.safetensors ... layer_23.safetensors  qa_outputs.safetensors
    <cache dir>/<model>/<RUN CONFIG>/ttnn/          the TT backend's ttnn.dump_tensor .tensorbin files, per card
    <cache dir>/<model>/<RUN CONFIG>/int8/          the fast path's int8 linears (`quantize.py`), per kernel
    <cache dir>/<model>/<RUN CONFIG>/compiled/      the fast path's compiled forward (`compiled.py`), per variant

Each tensor is stored as ttnn holds it: BFLOAT8_B tensors packed in ttnn's host tile order (uint8, 1088 bytes
per 32x32 tile), BFLOAT16 and FLOAT32 tensors as such. Tile-layout tensors (matmul weights and biases, the QA
head) are padded with zeros to multiples of 32 in their last two axes, a 1D bias as a [1, N] row (so
[32, pad32(N)]); the row-major embedding tables and layernorm parameters are stored unpadded. The manifest
records each tensor's logical (model-layout) shape, and loading cuts the padding off again: rows and
columns beyond it are dropped and the result reshaped to that shape.

Each of these is a verified directory (`verified.py`): used only when its manifest's header matches (format
version, run config, model, source fingerprint) and every file's size and sha256 match the manifest;
otherwise the reason is reported in one line and the cache is rebuilt, into a private directory renamed
into place whole, by one converter at a time (a second waits on the lock and loads the first one's
result instead of repeating a multi-gigabyte conversion). No pickle anywhere: JSON and safetensors, and for the
compiled forward an AOTInductor package (a zip of C++ sources and the shared library, weights inside).
"""

from __future__ import annotations

import json
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save as save_safetensors
from tqdm import tqdm

from . import bfp8
from .config import BFLOAT8_B, BFLOAT16, FLOAT32, RunConfig
from .sources import ModelSource
from .verified import Outcome, Staging, StaleCache, Staleness, VerifiedDirectory, read_verified
from .weights import import_state_dict, storage_group, tensor_kind

# Bump whenever what a cache holds changes (conversion, layout, padding, packing), so old caches are rebuilt.
FORMAT_VERSION = 1
LAYOUT_DIRECTORY = "safetensors"
TTNN_DIRECTORY = "ttnn"
INT8_DIRECTORY = "int8"
COMPILED_DIRECTORY = "compiled"
STORAGE_DTYPES = {BFLOAT8_B: torch.uint8, BFLOAT16: torch.bfloat16, FLOAT32: torch.float32}
_SAFETENSORS_DTYPES = {"U8": torch.uint8, "BF16": torch.bfloat16, "F32": torch.float32}
ROW_MAJOR_KINDS = ("embedding_weights", "layernorm_weights")


CACHE_VARIABLE = "BERTL11_CACHE"
DEFAULT_ROOT = "~/.cache/bertl11"


def cache_root(cache_dir: str | Path | None = None) -> tuple[Path, str]:
    """The weight cache's root and where that choice came from: "given" (`cache_dir`), the environment
    variable's name, or "default"."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser(), "given"
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE]).expanduser(), CACHE_VARIABLE
    return Path(DEFAULT_ROOT).expanduser(), "default"


def cache_home(cache_dir: str | Path | None, source: ModelSource, run_config: RunConfig) -> Path:
    """The directory of this model's caches for this run configuration."""
    root, _ = cache_root(cache_dir)
    model = re.sub(r"[^A-Za-z0-9._-]+", "--", source.name).strip("-.") or "model"
    return root / model / run_config.name


def cache_directory(cache_dir: str | Path | None, source: ModelSource, run_config: RunConfig) -> Path:
    """Where this model's cache for this run configuration lives."""
    return cache_home(cache_dir, source, run_config) / LAYOUT_DIRECTORY


def ttnn_cache_directory(cache_dir: str | Path | None, source: ModelSource, run_config: RunConfig) -> Path:
    """Where the TT backend keeps its ttnn.dump_tensor files: beside this cache (a rebuild replaces the
    safetensors directory whole, so nothing else may live inside it)."""
    return cache_home(cache_dir, source, run_config) / TTNN_DIRECTORY


def _storage_dtype(name: str, run_config: RunConfig) -> str:
    return run_config.dtype_of(tensor_kind(name))


def _to_storage(name: str, t: torch.Tensor, dtype: str) -> torch.Tensor:
    """A model-layout float tensor -> what the cache stores for it (see the module docstring)."""
    if dtype == BFLOAT8_B:
        return bfp8.pack(t)
    stored = t.to(STORAGE_DTYPES[dtype])
    if tensor_kind(name) in ROW_MAJOR_KINDS:
        return stored.contiguous()
    matrix = stored.reshape(bfp8.as_matrix(t.shape))
    padded = bfp8.padded_shape(t.shape)
    return F.pad(matrix, (0, padded[-1] - matrix.shape[-1], 0, padded[-2] - matrix.shape[-2])).contiguous()


def _from_storage(stored: torch.Tensor, shape: list[int], dtype: str) -> torch.Tensor:
    """The inverse of `_to_storage`: the model-layout tensor, in the stored precision (BFLOAT8_B decoded to
    bfloat16, which holds its values exactly)."""
    if dtype == BFLOAT8_B:
        return bfp8.unpack(stored, shape)
    if list(stored.shape) == list(shape):
        return stored
    rows, cols = bfp8.as_matrix(shape)[-2:]
    return stored[..., :rows, :cols].reshape(shape)


def _manifest_header(source: ModelSource, run_config: RunConfig) -> dict:
    """What a cache of this source and run config was made from, in the order a mismatch is reported."""
    return {
        "format_version": FORMAT_VERSION,
        "run_config": run_config.name,
        "model": source.name,
        "source_fingerprint": source.fingerprint,
    }


# Why a header field that differs makes the cache stale, in one line: (found, expected) -> reason.
HEADER_REASONS = {
    "format_version": lambda found, expected: f"cache format version {found}, this bertl11 writes {expected}",
    "run_config": lambda found, expected: f"cache was built for config {found}, not {expected}",
    "model": lambda found, expected: f"cache was built for model {found!r}, not {expected!r}",
    "source_fingerprint": lambda found, expected: "the model's weights changed since the cache was built (source fingerprint differs)",
}


def _verified(directory: Path, source: ModelSource, run_config: RunConfig, what: str = "weight cache") -> VerifiedDirectory:
    return VerifiedDirectory(directory, _manifest_header(source, run_config), HEADER_REASONS, what)


def int8_cache(cache_dir: str | Path | None, source: ModelSource, run_config: RunConfig) -> VerifiedDirectory:
    """Where the fast path keeps its int8 linears (`quantize.py`, one directory per kernel inside), keyed like this cache."""
    return _verified(cache_home(cache_dir, source, run_config) / INT8_DIRECTORY, source, run_config, "int8 cache")


def compiled_cache(cache_dir: str | Path | None, source: ModelSource, run_config: RunConfig) -> VerifiedDirectory:
    """Where the fast path keeps its compiled forward (`compiled.py`, one directory per variant inside), keyed like this cache."""
    return _verified(cache_home(cache_dir, source, run_config) / COMPILED_DIRECTORY, source, run_config, "compiled forward")


def load(directory: Path, source: ModelSource, run_config: RunConfig) -> dict[str, torch.Tensor]:
    """Model-layout tensors from a verified cache, or `StaleCache` saying why it cannot be used.

    BFLOAT8_B tensors come back as bfloat16 holding the decoded values (exactly), the others in their stored dtype.
    """
    manifest = _verified(directory, source, run_config).manifest()
    try:
        files, tensors = manifest["files"], manifest["tensors"]
        flat = {}
        # Reading, hashing and unpacking release the GIL: threads overlap one file's sha256 with another's unpacking.
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            for loaded in pool.map(lambda item: _load_file(directory / item[0], item[1], tensors), files.items()):
                flat.update(loaded)
    except (KeyError, TypeError, ValueError) as error:
        raise StaleCache(Staleness.MALFORMED, f"malformed manifest ({type(error).__name__}: {error})") from None
    missing = set(tensors) - set(flat)
    if missing:
        raise StaleCache(Staleness.MALFORMED, f"manifest lists tensors in no file: {sorted(missing)[0]}")
    return flat


def _load_file(path: Path, entry: dict, tensors: dict) -> dict[str, torch.Tensor]:
    # BFLOAT8_B tensors are decoded into new memory, so a file holding them is read into this thread's reused
    # buffer and its few other tensors (layernorm parameters) are copied out; the tensors of any other file
    # are returned as views of its bytes.
    reuse = any(spec["dtype"] == BFLOAT8_B for spec in tensors.values() if spec.get("file") == path.name)
    stored = _tensors_in(_read_verified(path, entry, _read_buffer(entry["bytes"]) if reuse else None), path.name)
    flat = {}
    for name, t in stored.items():
        spec = tensors.get(name)
        if spec is None or spec["file"] != path.name:
            raise StaleCache(Staleness.MALFORMED, f"{path.name} holds {name}, which the manifest does not place there")
        if t.dtype != STORAGE_DTYPES[spec["dtype"]] or list(t.shape) != spec["stored_shape"]:
            raise StaleCache(Staleness.MALFORMED, f"{name} is stored as {t.dtype} {list(t.shape)}, the manifest says {spec['dtype']} {spec['stored_shape']}")
        loaded = _from_storage(t, spec["shape"], spec["dtype"])
        flat[name] = loaded.clone() if reuse and spec["dtype"] != BFLOAT8_B else loaded
    return flat


_read_buffers = threading.local()


def _read_buffer(size: int) -> torch.Tensor:
    """This thread's reusable buffer for reading a file of `size` bytes. Fresh memory is slow the first time
    it is touched (a page fault per 4 KiB), and a BFLOAT8_B cache is 300 MiB of files each needed only
    until it is decoded."""
    buffer = getattr(_read_buffers, "buffer", None)
    if buffer is None or buffer.numel() < size:
        buffer = _read_buffers.buffer = torch.empty(size, dtype=torch.uint8)
    return buffer[:size]


def _read_verified(path: Path, entry: dict, into: torch.Tensor | None = None) -> torch.Tensor:
    """A cache file's bytes (uint8), once its size and sha256 match the manifest's: in `into` (a buffer of
    the manifest's size) when given, else in new (uninitialised) memory."""
    data = torch.empty(entry["bytes"], dtype=torch.uint8) if into is None else into
    read_verified(path, entry, memoryview(data.numpy()))
    return data


def _tensors_in(data: torch.Tensor, file_name: str) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file held in `data`, as views of it.

    Read by hand because the library offers no zero-copy way to read verified bytes: `safetensors.torch.load`
    copies every tensor out of the buffer, and `safe_open` would read the file again after it was verified.
    The format (github.com/huggingface/safetensors): an 8-byte little-endian header length, a JSON header
    {name: {dtype, shape, data_offsets}}, then the data; the writer pads the header so the data is 8-byte aligned.
    """
    try:
        header_length = int.from_bytes(data[:8].numpy().tobytes(), "little")
        header = json.loads(data[8 : 8 + header_length].numpy().tobytes())
        start = 8 + header_length
        views = {}
        for name, spec in header.items():
            if name == "__metadata__":
                continue
            dtype = _SAFETENSORS_DTYPES[spec["dtype"]]
            begin, end = (start + offset for offset in spec["data_offsets"])
            if not start <= begin <= end <= data.numel() or begin % dtype.itemsize:
                raise ValueError(f"{name} lies outside the data or unaligned")
            views[name] = data[begin:end].view(dtype).reshape(spec["shape"])
    except (AttributeError, KeyError, TypeError, ValueError, RuntimeError) as error:
        raise StaleCache(Staleness.MALFORMED, f"{file_name} is not a readable safetensors file ({error})") from None
    return views


def _write_cache(staging: Staging, source: ModelSource, run_config: RunConfig) -> dict[str, torch.Tensor]:
    """Convert the source into the staging directory. Returns what `load` would."""
    flat = import_state_dict(source.state_dict(), source.shape)
    by_file: dict[str, list[str]] = {}
    for name in flat:
        by_file.setdefault(f"{storage_group(name)}.safetensors", []).append(name)
    tensors, converted = {}, {}
    progress = tqdm(by_file.items(), desc=f"converting {source.name} ({run_config.name})", unit="file", disable=None)
    for file_name, names in progress:
        stored = {}
        for name in names:
            t, dtype = flat.pop(name), _storage_dtype(name, run_config)
            stored[name] = _to_storage(name, t, dtype)
            tensors[name] = {"file": file_name, "dtype": dtype, "shape": list(t.shape), "stored_shape": list(stored[name].shape)}
            converted[name] = _from_storage(stored[name], list(t.shape), dtype)
        staging.write(file_name, save_safetensors(stored))
    staging.extra["tensors"] = tensors
    return converted


def load_or_convert(
    source: ModelSource, run_config: RunConfig, cache_dir: str | Path | None = None, rebuild: bool = False
) -> tuple[dict[str, torch.Tensor], Outcome]:
    """Model-layout tensors in the run config's storage precision: from the cache when it is valid,
    otherwise converted from the source and written to the cache."""
    directory = cache_directory(cache_dir, source, run_config)
    return _verified(directory, source, run_config).load_or_build(
        lambda: load(directory, source, run_config), lambda staging: _write_cache(staging, source, run_config), rebuild)


def cache_bytes(directory: Path) -> int:
    """Size of a cache on disk."""
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
