"""Tenstorrent cards as data: the numbers a sharding plan is derived from.

Each card is described as ttnn 0.81 opens it, with its default dispatch cores (docs/sources.md section 8): ttnn
picks ethernet dispatch for N300 and T3000 clusters and worker (Tensix) dispatch for the rest, and the compute grid
is what that leaves. Sources (tenstorrent/tt-metal unless stated):
- compute grid (`device.compute_with_storage_grid_size()`): the core descriptors ttnn 0.81 ships
  (tt_metal/core_descriptors/wormhole_b0_80_arch.yaml, ..._eth_dispatch.yaml, blackhole_140_arch.yaml): an n150
  with worker dispatch 8x8, an n300 chip with ethernet dispatch 8x8 (8x7 with worker dispatch), Blackhole 13x10;
  Grayskull 12x9 (sweep_pgm_dispatch.sh).
- L1 per core: tt_metal/hw/inc/{grayskull,wormhole,blackhole}/dev_mem_map.h MEM_L1_SIZE (1024, 1464, 1536 KiB).
  Reserved low L1 (firmware, mailboxes, kernel config ring): MEM_MAP_END plus L1_KERNEL_CONFIG_SIZE (69 KiB,
  tt_metal/hostdevcommon/common_runtime_address_map.h), rounded up.
- clock, DRAM: tenstorrent.github.io board specifications (e150 1.2 GHz, 8 GB LPDDR4 in 8 channels; n150/n300
  1 GHz, 12 GB GDDR6 per chip in 12 banks; p150 1.35 GHz, 32 GB GDDR6 in 8 channels).
- batch ranges: what the grid admits, one grid line of cores per sequence (tests/test_cards.py checks it); what the
  seed itself ran on each card is `seed_runs` (its README and perf tests, docs/sources.md section 1).
- Grayskull support ended with tt-metal v0.55 (tenstorrent.github.io aibs/grayskull/specifications.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .config import TT_CONFIGS
from .errors import UserError

KIB = 1024
WORKER, ETHERNET = "worker", "ethernet"

ROW_MAJOR, COL_MAJOR = "ROW_MAJOR", "COL_MAJOR"

# Destination-register capacity in 32x32 tiles: 16 fp16 tiles, halved by half-sync double buffering; fp32
# accumulation halves it again (tt-metal's matmul subblock tables use these same limits, all architectures).
DEST_TILES_HALF_SYNC = 8
DEST_TILES_FP32_ACC = 4


@dataclass(frozen=True)
class SeedRuns:
    """What the seed (metal_BERT_large_11) ran on a card of this kind: its run configs and batches."""

    configs: tuple[str, ...]
    batches: tuple[int, int]


@dataclass(frozen=True)
class Card:
    """One Tenstorrent chip as the plan sees it.

    grid:            compute-with-storage grid (x columns, y rows) ops may use
    l1_bytes:        SRAM per Tensix core; l1_reserved_bytes of it hold firmware and kernel config
    batch_range:     (first, last) batch the grid admits: one grid line of cores per sequence
    orientation:     the seed's preferred shard orientation: COL_MAJOR puts batch along x (Grayskull),
                     ROW_MAJOR along y (Wormhole, Blackhole); the other is the fallback when batch does not fit
    ttnn_supported:  whether current ttnn (0.81) can open this chip
    dispatch:        the cores ttnn 0.81 dispatches from by default on this card (its grid is what that leaves)
    clusters:        ttnn's names for the clusters this card is (`ttnn.cluster.get_cluster_type()`)
    seed_runs:       what the seed ran on it (None: never); anything else is untested on a card
    l1_accumulation: whether its packer can accumulate partial sums in L1 (`packer_l1_acc`: Wormhole and
                     Blackhole; ttnn's GrayskullComputeKernelConfig has no such field)
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
    dispatch: str = WORKER
    clusters: tuple[str, ...] = ()
    seed_runs: SeedRuns | None = None
    l1_accumulation: bool = True

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

    def untested(self, config: str, batch: int) -> str | None:
        """Why this config and batch have never run on a card of this kind, in one line; None if the seed ran them."""
        runs = self.seed_runs
        if runs is None:
            return f"untested on a card: the seed never ran on a {self.arch_title}"
        first, last = runs.batches
        if config in runs.configs and first <= batch <= last:
            return None
        return f"untested on a card: the seed ran {self.arch_title} with {'/'.join(runs.configs)} at batch {first}-{last} only"

    def tested_text(self) -> str:
        """What the seed ran on this card, for `bertl11 doctor`."""
        runs = self.seed_runs
        if runs is None:
            return f"{self.title}: untested on a card (the seed never ran on a {self.arch_title})"
        first, last = runs.batches
        untested = [", ".join(c for c in TT_CONFIGS if c not in runs.configs)]
        if runs.batches != self.batch_range:
            untested.append(f"batches outside {first}-{last}")
        untested = " and ".join(u for u in untested if u)
        return (f"{self.title}: the seed ran {', '.join(runs.configs)} at batch {first}-{last}"
                + (f"; untested on a card: {untested}" if untested else ""))

    @property
    def arch_title(self) -> str:
        return self.title.split()[0]


# The seed on Wormhole: BFLOAT8_B-SHARDED only ("Only BFLOAT8_B-SHARDED supported for WH B0"), batch 2-7 in its
# README, batch 8 in its README table (n150, and n300 with ethernet dispatch) and perf tests.
WORMHOLE_SEED_RUNS = SeedRuns(("BFLOAT8_B-SHARDED",), (2, 8))
_N150 = Card(
    "n150", "Wormhole n150", "wormhole_b0", grid=(8, 8), l1_bytes=1464 * KIB, l1_reserved_bytes=176 * KIB,
    dram_channels=12, dram_gib=12, clock_mhz=1000, batch_range=(2, 8), orientation=ROW_MAJOR, ttnn_supported=True,
    clusters=("N150",), seed_runs=WORMHOLE_SEED_RUNS,
)
CARDS: dict[str, Card] = {
    c.name: c
    for c in (
        Card(
            "e150", "Grayskull e150", "grayskull", grid=(12, 9), l1_bytes=1024 * KIB, l1_reserved_bytes=160 * KIB,
            dram_channels=8, dram_gib=8, clock_mhz=1200, batch_range=(2, 12), orientation=COL_MAJOR,
            ttnn_supported=False, seed_runs=SeedRuns(TT_CONFIGS, (2, 12)), l1_accumulation=False,  # the seed's home
        ),
        _N150,
        # The same chip, twice on a card (a T3000 holds four); ttnn dispatches from ethernet cores there: 8x8 per chip.
        replace(_N150, name="n300", title="Wormhole n300 (per chip)", dispatch=ETHERNET, clusters=("N300", "N300_2x2", "T3K")),
        # 13x10: ROW_MAJOR (8 x batch) holds batch 2-10; the seed's fallback, COL_MAJOR (batch x 8), holds 11-13.
        # We take the whole range the grid admits; nothing above 10 has been measured on a card.
        Card(
            "p150", "Blackhole p150", "blackhole", grid=(13, 10), l1_bytes=1536 * KIB, l1_reserved_bytes=176 * KIB,
            dram_channels=8, dram_gib=32, clock_mhz=1350, batch_range=(2, 13), orientation=ROW_MAJOR,
            ttnn_supported=True, clusters=("P150",),  # the seed predates Blackhole: nothing here ran on a card
        ),
    )
}


def get_card(name: str) -> Card:
    try:
        return CARDS[name]
    except KeyError:
        raise UserError(f"unknown Tenstorrent card {name!r}; choose one of: {', '.join(CARDS)}") from None


def card_for_arch(arch: str, grid: tuple[int, int], cluster: str | None = None) -> Card:
    """The card entry for a chip ttnn opened: its architecture name, reported compute grid and ttnn's cluster type
    (an n150 and an n300 chip report the same 8x8 grid). A grid no entry has (a harvested chip, another dispatch
    mode) gets an entry of its own, built from the cluster's or architecture's entry with the reported grid; the
    plan then derives every program config for that grid."""
    arch = arch.lower()
    grid = tuple(grid)
    matches = [c for c in CARDS.values() if c.arch == arch]
    if not matches:
        raise UserError(f"ttnn opened a {arch} chip; bertl11 knows {', '.join(sorted({c.arch for c in CARDS.values()}))}")
    matches.sort(key=lambda c: cluster not in c.clusters)  # the cluster's own entry first
    for card in matches:
        if card.grid == grid:
            return card
    base = matches[0]
    x, y = grid
    if x < 1 or y < 1:
        raise UserError(f"ttnn reports a {x}x{y} compute grid for the {base.arch} chip; there are no cores to run on")
    # One grid line of cores per sequence: at most the longer side's batch (the plan refuses what does not fit).
    return replace(base, title=f"{base.title.split(' (')[0]} ({x}x{y} grid)", grid=grid,
                   batch_range=(min(base.batch_range[0], max(x, y)), max(x, y)))
