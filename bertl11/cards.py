"""Tenstorrent cards as data: the numbers a sharding plan is derived from.

Sources (tenstorrent/tt-metal unless stated):
- compute grid (`device.compute_with_storage_grid_size()`, one Tensix row goes to dispatch):
  tt_metal/core_descriptors/*.yaml; tests/tt_metal/tt_metal/perf_microbenchmark/dispatch/sweep_pgm_dispatch.sh
  (Grayskull 12x9, Wormhole 8x7 with worker dispatch, Blackhole 13x10). n150 runs ethernet dispatch: 8x8.
- L1 per core: tt_metal/hw/inc/{grayskull,wormhole,blackhole}/dev_mem_map.h MEM_L1_SIZE (1024, 1464, 1536 KiB).
  Reserved low L1 (firmware, mailboxes, kernel config ring): MEM_MAP_END plus L1_KERNEL_CONFIG_SIZE (69 KiB,
  tt_metal/hostdevcommon/common_runtime_address_map.h), rounded up.
- clock, DRAM: tenstorrent.github.io board specifications (e150 1.2 GHz, 8 GB LPDDR4 in 8 channels; n150/n300
  1 GHz, 12 GB GDDR6 per chip in 12 banks; p150 1.35 GHz, 32 GB GDDR6 in 8 channels).
- batch ranges: the seed's README (e150 2-12, n300 2-7) and perf anchors (n150 batch 8); see `batch_range`.
- Grayskull support ended with tt-metal v0.55 (tenstorrent.github.io aibs/grayskull/specifications.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .errors import UserError

KIB = 1024

ROW_MAJOR, COL_MAJOR = "ROW_MAJOR", "COL_MAJOR"

# Destination-register capacity in 32x32 tiles: 16 fp16 tiles, halved by half-sync double buffering; fp32
# accumulation halves it again (tt-metal's matmul subblock tables use these same limits, all architectures).
DEST_TILES_HALF_SYNC = 8
DEST_TILES_FP32_ACC = 4


@dataclass(frozen=True)
class Card:
    """One Tenstorrent chip as the plan sees it.

    grid:            compute-with-storage grid (x columns, y rows) ops may use
    l1_bytes:        SRAM per Tensix core; l1_reserved_bytes of it hold firmware and kernel config
    batch_range:     (first, last) batch the demo runs: one grid line of cores per sequence
    orientation:     the seed's preferred shard orientation: COL_MAJOR puts batch along x (Grayskull),
                     ROW_MAJOR along y (Wormhole, Blackhole); the other is the fallback when batch does not fit
    ttnn_supported:  whether current ttnn (0.81) can open this chip
    """

    name: str
    title: str
    arch: str
    grid: tuple[int, int]
    l1_bytes: int
    l1_reserved_bytes: int
    dram_channels: int
    dram_gib: int
    clock_mhz: int
    batch_range: tuple[int, int]
    orientation: str
    ttnn_supported: bool

    @property
    def cores(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def l1_free_bytes(self) -> int:
        """L1 per core that buffers and circular buffers may use."""
        return self.l1_bytes - self.l1_reserved_bytes

    @property
    def orientations(self) -> tuple[str, str]:
        """Preferred orientation first, then the fallback (the seed's model_config.py tries both in this order)."""
        return (self.orientation, COL_MAJOR if self.orientation == ROW_MAJOR else ROW_MAJOR)

    def batches(self) -> range:
        return range(self.batch_range[0], self.batch_range[1] + 1)


_N150 = Card(
    "n150", "Wormhole n150", "wormhole_b0", grid=(8, 8), l1_bytes=1464 * KIB, l1_reserved_bytes=176 * KIB,
    dram_channels=12, dram_gib=12, clock_mhz=1000, batch_range=(2, 8), orientation=ROW_MAJOR, ttnn_supported=True,
)
CARDS: dict[str, Card] = {
    c.name: c
    for c in (
        Card(
            "e150", "Grayskull e150", "grayskull", grid=(12, 9), l1_bytes=1024 * KIB, l1_reserved_bytes=160 * KIB,
            dram_channels=8, dram_gib=8, clock_mhz=1200, batch_range=(2, 12), orientation=COL_MAJOR,
            ttnn_supported=False,
        ),
        # The seed names n150 only at batch 8 (its perf anchor); 2-7 use the same per-core work on fewer rows.
        _N150,
        # The same chip, twice on a card; the seed ran n300 with worker-core dispatch, which leaves 8x7 (README: batch 2-7).
        replace(_N150, name="n300", title="Wormhole n300 (per chip)", grid=(8, 7), batch_range=(2, 7)),
        # 13x10: ROW_MAJOR (8 x batch) holds batch 2-10; the seed's fallback, COL_MAJOR (batch x 8), holds 11-13.
        # We take the whole range the grid admits; nothing above 10 has been measured on a card.
        Card(
            "p150", "Blackhole p150", "blackhole", grid=(13, 10), l1_bytes=1536 * KIB, l1_reserved_bytes=176 * KIB,
            dram_channels=8, dram_gib=32, clock_mhz=1350, batch_range=(2, 13), orientation=ROW_MAJOR,
            ttnn_supported=True,
        ),
    )
}


def get_card(name: str) -> Card:
    try:
        return CARDS[name]
    except KeyError:
        raise UserError(f"unknown Tenstorrent card {name!r}; choose one of: {', '.join(CARDS)}") from None


def card_for_arch(arch: str, grid: tuple[int, int]) -> Card:
    """The card entry for a chip ttnn opened: its architecture name and reported compute grid. A grid no
    entry has (a harvested chip, another dispatch mode) gets an entry of its own, built from the architecture's
    first entry with the reported grid; the plan then derives every program config for that grid."""
    arch = arch.lower()
    grid = tuple(grid)
    matches = [c for c in CARDS.values() if c.arch == arch]
    for card in matches:
        if card.grid == grid:
            return card
    if not matches:
        raise UserError(f"ttnn opened a {arch} chip; bertl11 knows {', '.join(sorted({c.arch for c in CARDS.values()}))}")
    base = matches[0]
    x, y = grid
    if x < 1 or y < 1:
        raise UserError(f"ttnn reports a {x}x{y} compute grid for the {base.arch} chip; there are no cores to run on")
    # One grid line of cores per sequence: at most the longer side's batch (the plan refuses what does not fit).
    return replace(base, title=f"{base.title.split(' (')[0]} ({x}x{y} grid)", grid=grid,
                   batch_range=(min(base.batch_range[0], max(x, y)), max(x, y)))
