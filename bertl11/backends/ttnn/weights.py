"""The .tensorbin weight cache: the model's parameters converted once per chip architecture into ttnn's host format,
kept as a verified directory beside the safetensors cache, and put on the chips.

The model-layout tensors from the verified safetensors cache are laid out as ttnn takes them (QKV interleaved in
the plan's groups, layernorm parameters [1, 1, H/32, 32] row-major, matmul weights tiled), converted with
`ttnn.from_torch` and stored with `ttnn.dump_tensor` in `cache.ttnn_cache_directory`/<arch>/, a verified directory
(`verified.py`: a manifest of sizes and sha256 and of what the files were made from, written last; written whole, by
one process at a time, under a lock beside it). Later loads verify it and use `ttnn.load_tensor`; a stale one is
rebuilt and the reason reported (`cache_detail`). The files hold one chip's tensors; on a mesh every chip gets the
same (`Chips.upload`), so a mesh uses the same cache.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...config import RunConfig
from ...plan import interleave_qkv
from ...verified import Staging, VerifiedDirectory, sha256_file
from ...weights import tensor_kind
from .device import Chips, ttnn_version

# ttnn.dump_tensor and load_tensor take only files with this extension (ttnn/operations/core.py).
TENSORBIN = ".tensorbin"
# Why a .tensorbin cache whose header differs is stale, in one line: (found, expected) -> reason.
TENSORBIN_REASONS = {
    "ttnn": lambda found, expected: f"written by ttnn {found}, this is ttnn {expected}",
    "config": lambda found, expected: f"converted for config {found}, not {expected}",
    "qkv_groups": lambda found, expected: f"QKV interleaved in {found} groups, this card's plan needs {expected}",
    "source": lambda found, expected: "the safetensors cache it was converted from changed",
}


def tensorbin_name(name: str, dtype: str) -> str:
    return f"{name}_{dtype.upper()}{TENSORBIN}"


def device_layout(name: str, t: torch.Tensor, run_config: RunConfig, groups: int) -> tuple[torch.Tensor, str, bool]:
    """(tensor shaped as ttnn takes it, dtype name, tile layout?) for one model-layout parameter."""
    kind = tensor_kind(name)
    dtype = run_config.dtype_of(kind)
    if kind == "embedding_weights":
        return t, dtype, False
    if kind == "layernorm_weights":  # the seed's gamma/beta layout: [1, 1, H/32, 32], row-major
        return t.reshape(1, 1, -1, 32), dtype, False
    if name.endswith("qkv.weight") or name.endswith("qkv.bias"):
        t = interleave_qkv(t, groups)
    return t.reshape(1, 1, -1, t.shape[-1]), dtype, True


class TensorbinWeights:
    """The parameters of one run config on `chips` of architecture `arch`, through the .tensorbin cache under
    `directory` when one is given.

    source_manifest: the safetensors cache's manifest they are converted from (its hash goes into ours, so a rebuilt
    source cache makes them stale)."""

    def __init__(self, chips: Chips, arch: str, run_config: RunConfig, directory: Path | None, source_manifest: Path | None):
        self.chips, self.ttnn, self.arch = chips, chips.ttnn, arch
        self.run_config = run_config
        self.directory = directory
        self.source_manifest = source_manifest

    def prepare(self, flat: dict[str, torch.Tensor], groups: int) -> tuple[dict, str]:
        """Model-layout tensors -> device tensors in DRAM, and what the cache did in one line: loaded from a cache
        that verifies, else converted (and written into a new cache)."""
        ttnn = self.ttnn
        if self.directory is None:
            return self._convert(flat, groups), ""
        cache = self.cache(groups)
        files = {name: tensorbin_name(name, self.run_config.dtype_of(tensor_kind(name))) for name in flat}

        def load() -> dict:
            cache.verify(required=list(files.values()))
            return {name: self.chips.upload(ttnn.load_tensor(str(cache.path / files[name])), ttnn.DRAM_MEMORY_CONFIG)
                    for name in flat}

        tensors, outcome = cache.load_or_build(load, lambda staging: self._convert(flat, groups, staging))
        return tensors, outcome.detail

    def _convert(self, flat: dict[str, torch.Tensor], groups: int, staging: Staging | None = None) -> dict:
        """Model-layout tensors -> device tensors in DRAM, one at a time; each host tensor is also dumped into
        `staging` (a .tensorbin cache being written) when given."""
        ttnn = self.ttnn
        tensors = {}
        for name, t in flat.items():
            data, dtype, tiled = device_layout(name, t.float(), self.run_config, groups)
            host = ttnn.from_torch(data, dtype=getattr(ttnn, dtype), layout=ttnn.TILE_LAYOUT if tiled else ttnn.ROW_MAJOR_LAYOUT)
            if staging is not None:
                self._dump(host, staging, tensorbin_name(name, dtype))
            tensors[name] = self.chips.upload(host, ttnn.DRAM_MEMORY_CONFIG)
        return tensors

    def _dump(self, host, staging: Staging, file_name: str) -> None:
        # ttnn.dump_tensor refuses a name not ending in .tensorbin: staged files are written under their own names.
        self.ttnn.dump_tensor(str(staging.path / file_name), host)
        staging.add(file_name)

    def cache(self, groups: int) -> VerifiedDirectory:
        """The .tensorbin cache of this chip architecture: what its files were made from (the installed ttnn, the run
        config, the QKV interleave groups and the safetensors manifest they were converted from)."""
        source = self.source_manifest
        header = {
            "ttnn": ttnn_version(), "config": self.run_config.name, "qkv_groups": groups,
            "source": sha256_file(source) if source is not None and source.is_file() else None,
        }
        return VerifiedDirectory(self.directory / self.arch, header, TENSORBIN_REASONS, ".tensorbin cache")
