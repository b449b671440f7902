"""The traced forward: the model captured once per input shape and replayed with `execute_trace` on command queue 0,
while queue 1 writes the next batch into DRAM staging buffers and each batch's logits are read back one batch late,
as tt-metal's performant runners do (docs/sources.md section 8).

Per batch, after the capture:

    queue 1   wait for queue 0's last reshard; copy the host inputs into the staging buffers; record `write`
    queue 0   wait for `write`; reshard staging into the trace's input buffers; record `resharded`;
              execute_trace (non-blocking); a non-blocking read of the logits; record `read`
    host      wait for the previous batch's `read`, then hand its logits over

so batch i+1 is staged and running before the host waits for batch i, and the host waits once per batch.

The trace region: ttnn 0.81 opens the chips with a trace region of 0 by default, and then sizes the trace's buffers
from the capture itself, placing them in DRAM after it. A fixed region can be asked for with
$BERTL11_TRACE_REGION_BYTES; when ttnn refuses a capture (a fixed region too small, or a dynamic one that would
overlap buffers the capture allocated), the one-line error gives the size ttnn reported with a 25% margin.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from ...errors import UserError
from .device import MODEL_QUEUE, UPLOAD_QUEUE, Chips, Read

TRACE_REGION_VARIABLE = "BERTL11_TRACE_REGION_BYTES"
TRACE_REGION_MARGIN = 1.25
MIB = 2**20
# What ttnn says when a captured trace does not fit its region (MeshTrace::populate_mesh_buffer), and when a
# dynamically placed one would overlap what the capture allocated.
TOO_SMALL = re.compile(r"Creating trace buffers of size (\d+)\s*B")
OVERLAPS = "overlaps with buffers allocated during trace capture"


def trace_region_bytes() -> int:
    """The trace region to open the chips with: $BERTL11_TRACE_REGION_BYTES, else 0 (ttnn sizes it from the capture)."""
    text = os.environ.get(TRACE_REGION_VARIABLE, "0")
    if not text.isdigit():
        raise UserError(f"${TRACE_REGION_VARIABLE}={text!r}: give the trace region in bytes (0: sized by ttnn from the capture)")
    return int(text)


def trace_refusal(error: RuntimeError) -> UserError | None:
    """ttnn's refusal to keep a captured trace, as one line saying what to set; None for any other error."""
    message = str(error)
    needed = TOO_SMALL.search(message)
    if needed:
        size = math.ceil(int(needed.group(1)) * TRACE_REGION_MARGIN / MIB) * MIB
        return UserError(f"--trace: the captured trace needs {int(needed.group(1))} B of device memory (ttnn); run again "
                         f"with {TRACE_REGION_VARIABLE}={size} (that plus {TRACE_REGION_MARGIN - 1:.0%}, in whole MiB)")
    if OVERLAPS in message:
        return UserError(f"--trace: ttnn could not place the trace after the capture (it would overlap buffers the capture "
                         f"allocated); set {TRACE_REGION_VARIABLE} to a fixed region, e.g. {64 * MIB}: if that is too "
                         f"small, ttnn reports the size the trace needs")
    return None


@dataclass
class Trace:
    """A forward captured for one input shape (batch, seq): its id, the DRAM staging buffers queue 1 writes, the
    input buffers the trace reads and the logits buffer it writes."""

    key: tuple[int, int]
    id: object
    staging: tuple
    inputs: tuple
    logits: object


class TracedForward:
    """Runs batches through a captured trace on `chips`, two command queues and one host wait per batch."""

    def __init__(self, chips: Chips):
        self.chips = chips
        self.ttnn = chips.ttnn
        self.trace: Trace | None = None
        self.inputs: tuple = ()  # the trace's input buffers: the model must not free them
        self._resharded = None  # queue 0 has copied the staging buffers out: queue 1 may write them again
        self._written = None  # queue 1 has written the staging buffers: queue 0 may read them

    def run(self, batches: Iterable, forward: Callable) -> Iterator:
        """Logits [B, S, 2] on the host for each ((batch, seq), host inputs) in `batches`, in order, each once the
        next batch is running. `forward(inputs)` runs the model on device inputs and returns its device logits;
        it is run once to compile and once inside the capture, for each new input shape."""
        pending = None
        for key, hosts in batches:
            if self.trace is None or self.trace.key != key:
                if pending is not None:  # its logits buffer goes with the old trace
                    yield self._finish(*pending)
                    pending = None
                self._capture(key, hosts, forward)  # leaves this batch in the trace's inputs
            else:
                self._stage(hosts)
                self._reshard()
            self.ttnn.execute_trace(self.chips.mesh_device, self.trace.id, cq_id=MODEL_QUEUE, blocking=False)
            read = self.chips.start_read(self.trace.logits)
            if pending is not None:
                yield self._finish(*pending)
            pending = key, read
        if pending is not None:
            yield self._finish(*pending)

    def _stage(self, hosts) -> None:
        """Queue 1: the host inputs into the DRAM staging buffers, once queue 0 has copied the last ones out."""
        ttnn = self.ttnn
        if self._resharded is not None:
            ttnn.wait_for_event(UPLOAD_QUEUE, self._resharded)
        for host, staging in zip(hosts, self.trace.staging):
            ttnn.copy_host_to_device_tensor(host, staging, cq_id=UPLOAD_QUEUE)
        self._written = ttnn.record_event(self.chips.mesh_device, UPLOAD_QUEUE)

    def _reshard(self) -> None:
        """Queue 0: staging into the trace's input buffers; the event after it frees the staging buffers for queue 1
        while the trace still runs."""
        ttnn = self.ttnn
        ttnn.wait_for_event(MODEL_QUEUE, self._written)
        for staging, target in zip(self.trace.staging, self.trace.inputs):
            ttnn.to_memory_config(staging, memory_config=ttnn.L1_MEMORY_CONFIG, output_tensor=target)
        self._resharded = ttnn.record_event(self.chips.mesh_device, MODEL_QUEUE)

    def _capture(self, key, hosts, forward: Callable) -> None:
        """This batch into new staging buffers and from them into new trace inputs (all on queue 0), the model run once
        to compile every kernel (a trace may not compile), then captured."""
        ttnn, device = self.ttnn, self.chips.mesh_device
        self.release()
        staging = tuple(self.chips.upload(host, ttnn.DRAM_MEMORY_CONFIG) for host in hosts)
        self.inputs = tuple(ttnn.to_memory_config(s, memory_config=ttnn.L1_MEMORY_CONFIG) for s in staging)
        self._resharded = ttnn.record_event(device, MODEL_QUEUE)
        ttnn.deallocate(forward(self.inputs))
        trace_id = ttnn.begin_trace_capture(device, cq_id=MODEL_QUEUE)
        try:
            logits = forward(self.inputs)
            ttnn.end_trace_capture(device, trace_id, cq_id=MODEL_QUEUE)
        except RuntimeError as error:
            refusal = trace_refusal(error)
            if refusal is None:
                raise
            raise refusal from None
        self.trace = Trace(key, trace_id, staging, self.inputs, logits)

    def _finish(self, key, read: Read):
        batch, seq = key
        return self.chips.finish_read(read).float().reshape(batch, seq, -1)

    def release(self) -> None:
        """Give back the trace and its buffers."""
        if self.trace is None:
            return
        ttnn = self.ttnn
        ttnn.release_trace(self.chips.mesh_device, self.trace.id)
        for buffer in (*self.trace.staging, *self.trace.inputs, self.trace.logits):
            ttnn.deallocate(buffer)
        self.trace, self.inputs = None, ()
