"""The recording backend: any `Backend` wrapped so that each call of its 13 ops (`ops.OPS`) is written down.

    recording = Recording(model.ops, timed=True)
    dataclasses.replace(model, ops=recording)(input_ids, token_type_ids, attention_mask)
    recording.calls  # one OpCall per op call: op, layer, input and output shapes, dtype, seconds

Each call keeps its op, its encoder layer (None for embeddings and the QA head), the shapes of its tensor inputs
and outputs and its output's dtype; `timed` also times it with the backend synchronised on both sides, and
`keep_outputs` (a test on the call) keeps the output tensors of the calls it accepts. The recording does not fuse
attention and runs `forward` op by op (no trace), so the model calls the seed's 11 encoder ops one by one (the path
the TT backend implements); the rest of the interface passes through unrecorded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from .ops import ENCODER_OPS, OPS, Backend


def tensors(value) -> list:
    """The tensors an op returned: one, or each of a tuple (split heads, the QA head's start and end)."""
    items = value if isinstance(value, tuple) else (value,)
    return [t for t in items if hasattr(t, "shape")]


def shape_of(t) -> tuple[int, ...]:
    return tuple(int(n) for n in t.shape)


@dataclass
class OpCall:
    op: str
    layer: int | None  # None for embeddings and the QA head
    input_shapes: list[tuple[int, ...]]
    output_shapes: list[tuple[int, ...]]
    dtype: str  # the first output's
    seconds: float | None = None  # when timed
    outputs: tuple | None = None  # when kept


class Recording(Backend):
    """A backend whose 13 ops are the wrapped backend's, each call recorded in `calls`."""

    def __init__(self, backend: Backend, timed: bool = False, keep_outputs: Callable[[OpCall], bool] | None = None):
        self.backend = backend
        self.timed = timed
        self.keep_outputs = keep_outputs
        self.torch_device, self.card = backend.torch_device, backend.card
        self.calls: list[OpCall] = []
        self._layer = -1

    def prepare(self, flat: dict) -> Any:
        return self.backend.prepare(flat)

    def begin_batch(self, batch: int, seq: int) -> None:
        self.backend.begin_batch(batch, seq)

    def synchronize(self) -> None:
        self.backend.synchronize()

    def describe(self) -> str:
        return self.backend.describe()

    def kernel(self) -> str | None:
        return self.backend.kernel()

    def release(self, t) -> None:
        self.backend.release(t)

    def close(self) -> None:
        self.backend.close()

    def attention_mask(self, attention_mask):
        return self.backend.attention_mask(attention_mask)

    def _call(self, op: str, args: tuple):
        if op == ENCODER_OPS[0]:
            self._layer += 1
        run = getattr(self.backend, op)  # every name in OPS is a declared Backend op
        if self.timed:
            self.backend.synchronize()  # asynchronous backends (torch CUDA, ttnn) finish earlier work first
            started = time.perf_counter()
            out = run(*args)
            self.backend.synchronize()
            seconds = time.perf_counter() - started
        else:
            out, seconds = run(*args), None
        outputs = tensors(out)
        call = OpCall(
            op=op,
            layer=self._layer if op in ENCODER_OPS else None,
            input_shapes=[shape_of(t) for t in args if hasattr(t, "shape")],
            output_shapes=[shape_of(t) for t in outputs],
            dtype=str(outputs[0].dtype).removeprefix("torch."),
            seconds=seconds,
        )
        if self.keep_outputs is not None and self.keep_outputs(call):
            call.outputs = tuple(outputs)
        self.calls.append(call)
        return out


def _recorded(op: str):
    def call(self, *args):
        return self._call(op, args)

    call.__name__ = op
    return call


for _op in OPS:
    setattr(Recording, _op, _recorded(_op))
