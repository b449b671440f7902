"""The chips: Tenstorrent chips opened by ttnn 0.81 as one mesh device (its dispatch cores, compute grid and two
command queues, the card it is, tt-metal's watcher), and how host tensors spread over them and come back.

Dispatch: the chips open with ttnn's default dispatch cores, which ttnn 0.81 chooses per cluster (ethernet cores on
N300 and T3000 clusters, Tensix worker cores elsewhere); the compute grid is what that leaves, and the card is found
from ttnn's cluster type and that grid (`cards.card_for_arch`; docs/tenstorrent.md).
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass

from ...cards import Card, card_for_arch
from ...errors import UserError

# Command queues: 0 runs the model and reads its results, 1 writes the next inputs (tt-metal's two-queue pipelining).
MODEL_QUEUE, UPLOAD_QUEUE = 0, 1
SINGLE_CHIP = (1, 1)
# tt-metal's watcher checks every core for tripped asserts and bad NOC addresses and logs where each RISC-V waits,
# every this many seconds, to generated/watcher/watcher.log; tt-metal reads the variable when its runtime starts.
WATCHER_VARIABLE = "TT_METAL_WATCHER"
WATCHER_SECONDS = 10


def import_ttnn():
    try:
        import ttnn
    except ImportError as error:
        raise UserError(
            f"--device tt needs the ttnn package (pip install '.[tt]' in a bertl11 checkout, on Python 3.10 or 3.12): {error}"
        ) from None
    return ttnn


def ttnn_version() -> str:
    """The installed ttnn's version, from its package metadata: ttnn 0.81 has no `__version__`, and the
    .tensorbin cache must go stale when ttnn changes. A source build without metadata reads "unknown"."""
    try:
        return importlib.metadata.version("ttnn")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def turn_on_watcher(seconds: int = WATCHER_SECONDS) -> None:
    """Run tt-metal's watcher (`--watcher`): set before ttnn opens a device, whose runtime reads it once."""
    os.environ[WATCHER_VARIABLE] = str(seconds)


@dataclass
class Chips:
    """The opened chips: `shape` (rows x columns) of them as one mesh device, running data parallel: host inputs are
    split along the batch (dim 0), weights replicated, results joined back."""

    ttnn: object
    mesh_device: object
    shape: tuple[int, int]

    @property
    def count(self) -> int:
        return self.shape[0] * self.shape[1]

    def input_mapper(self):
        """How a host input spreads over the chips: split along the batch (None on one chip)."""
        if self.count == 1:
            return None
        return self.ttnn.shard_tensor_to_mesh_mapper(self.mesh_device, dim=0)

    def upload(self, host, memory_config):
        """A host tensor on the chips. A tensor of one chip's data goes to every chip: that is how ttnn's own
        `as_tensor` puts a cached replicated tensor on a mesh (ttnn/operations/core.py)."""
        return self.ttnn.to_device(host, self.mesh_device, memory_config=memory_config)

    def start_read(self, t) -> "Read":
        """Queue a non-blocking read of `t` on the model queue and an event after it; the host does not wait."""
        ttnn = self.ttnn
        host = ttnn.from_device(t, blocking=False, queue_id=MODEL_QUEUE)
        return Read(host, ttnn.record_event(self.mesh_device, MODEL_QUEUE))

    def finish_read(self, read: "Read"):
        """The host waits for the read's event (its one wait for that batch), then the tensor joined over the chips."""
        ttnn = self.ttnn
        ttnn.event_synchronize(read.event)
        composer = ttnn.concat_mesh_to_tensor_composer(self.mesh_device, dim=0) if self.count > 1 else None
        return ttnn.to_torch(read.host, mesh_composer=composer)

    def close(self) -> None:
        self.ttnn.close_mesh_device(self.mesh_device)


@dataclass
class Read:
    """A device-to-host read in flight: the host tensor it fills and the event recorded after it."""

    host: object
    event: object


def open_chips(ttnn, mesh: tuple[int, int] = SINGLE_CHIP, trace_region_bytes: int = 0) -> tuple[Chips, Card]:
    """Open the chips of `mesh` (rows x columns; one chip by default) as one mesh device with a trace region and
    two command queues, or say in one line why not (no card, too few chips, a Grayskull, a driver error). The card
    entry is per chip: every chip runs the same plan on its share of the batch."""
    try:
        found = ttnn.GetNumAvailableDevices()
    except RuntimeError as error:
        found, reason = 0, str(error)
    else:
        reason = ""
    if not found:
        detail = "no chips detected" if "No chips detected" in reason or not reason else reason.splitlines()[0]
        raise UserError(f"--device tt: no Tenstorrent card found ({detail}); use --device cpu or cuda")
    chips = mesh[0] * mesh[1]
    if chips > found:
        raise UserError(f"--mesh {mesh[0]}x{mesh[1]} needs {chips} chips; ttnn finds {found}")
    arch = ttnn.get_arch_name().lower()
    if arch == "grayskull":
        raise UserError(
            "--device tt: this card is a Grayskull, which current ttnn no longer runs (last supported in tt-metal v0.55); "
            "`bertl11 plan --card e150` and the grid emulator still cover it"
        )
    cluster = ttnn.cluster.get_cluster_type().name
    try:
        mesh_device = ttnn.open_mesh_device(ttnn.MeshShape(*mesh), trace_region_size=trace_region_bytes, num_command_queues=2)
    except RuntimeError as error:
        raise UserError(f"--device tt: ttnn could not open {chips} chip(s): {str(error).splitlines()[0]}") from None
    opened = Chips(ttnn, mesh_device, tuple(mesh))
    enable = getattr(mesh_device, "enable_program_cache", None)
    if enable is not None:  # on by default in current ttnn; older builds need the call
        enable()
    grid = mesh_device.compute_with_storage_grid_size()
    try:
        return opened, card_for_arch(arch, (grid.x, grid.y), cluster)
    except UserError:
        opened.close()
        raise
