"""The ttnn backend: the model on Tenstorrent chips (Wormhole n150/n300, Blackhole p150) with ttnn 0.81.

    device.py           the chips: one mesh device, its dispatch cores and grid, the watcher, host <-> device
    trace.py            the traced forward: captured once per input shape, two command queues, DRAM staging, events
    weights.py          the .tensorbin weight cache (a verified directory) and the parameters on the chips
    ops.py              `TtnnOps`: each op a straight run of ttnn calls, placed by the sharding plan
    program_configs.py  program and compute kernel configs as ttnn objects (the contract tier loads it on its own)

`ttnn` is imported only when the chips are opened, so this package imports without it.
"""

from .device import open_chips, turn_on_watcher
from .ops import TtnnOps

__all__ = ["TtnnOps", "open_chips", "turn_on_watcher"]
