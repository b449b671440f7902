"""Int8 linears for the fast path: quantised once, cached beside the weight cache, swapped in at run time.

As in gpt-fast's quantize.py, the work happens offline and the run only loads it: each encoder linear's
weight is quantised per output column, and the few input channels whose activations dwarf the rest (the
outlier channels, found once from a float32 forward, `input_outliers`) are kept in float32. The result goes
into a verified directory (`verified.py`) beside the BFLOAT8_B weight cache, `<RUN CONFIG>/int8/<kernel>/`:
one safetensors file per encoder layer, the manifest keyed like the weight cache (format version, run
config, model, source fingerprint) plus the kernel and this module's format version. A later load verifies
and loads it, and runs no calibration forward.

Two kernels (`INT8_LINEARS`): `torch._int_mm` (oneDNN s8 x s8 -> s32, fast with VNNI or AMX) and fbgemm's
dynamically quantised linear (fast on AVX2). `machine.probe` times both and picks one.

The calibration forward runs the model, which this module does not import: the backend passes it in as a
function recording each linear's input channel maxima (`backends.torch.channel_maxima`).
"""

from __future__ import annotations

import dataclasses
import warnings
from contextlib import contextmanager
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from .config import BertShape
from .verified import Outcome, Staging, StaleCache, Staleness, UnwritableCache, VerifiedDirectory, read_verified
from .weights import storage_group, tensor_kind

# Bump whenever what the int8 cache holds changes (quantisation, outlier choice, stored tensors).
FORMAT_VERSION = 1
# Input channels per linear kept in float32, and the seeded batch that finds them.
OUTLIER_CHANNELS = 16
CALIBRATION_SEED = 11
CALIBRATION_LENGTH = 128


def quantize_rows(x: torch.Tensor, skip_columns: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[M, K] float -> (int8 [M, K], float32 scale [M, 1]): symmetric, one scale per row (token).

    The `skip_columns` do not set the scale (they are computed in float elsewhere); they saturate.
    """
    magnitudes = x.abs().index_fill_(1, skip_columns, 0.0)
    scale = magnitudes.amax(dim=1, keepdim=True).float().clamp_(min=1e-12).div_(127.0)
    return (x / scale).round_().clamp_(-127, 127).to(torch.int8), scale


def quantize_columns(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[K, N] float -> (int8 [K, N], float32 scale [N]): symmetric, one scale per output column."""
    scale = w.abs().amax(dim=0).float().clamp_(min=1e-12).div_(127.0)
    return (w / scale).round_().to(torch.int8), scale


@contextmanager
def quantized_engine(name: str):
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


def _outlier_layout(n: int) -> dict[str, tuple[torch.dtype, list[int]]]:
    return {"outlier_channels": (torch.int64, [OUTLIER_CHANNELS]), "outlier_rows": (torch.float32, [OUTLIER_CHANNELS, n])}


class Int8Linear:
    """What every int8 linear keeps (`tensors`, the cache's parts): its int8 weight, the weight's column scales, the
    outlier input channels and their float32 rows of the weight, whose slice of the product stays in float32."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.weight, self.scale = tensors["int8"], tensors["scale"]
        self.outlier_channels, self.outlier_rows = tensors["outlier_channels"], tensors["outlier_rows"]

    @classmethod
    def from_parts(cls, weight: torch.Tensor, scale: torch.Tensor, w: torch.Tensor, outlier_channels: torch.Tensor):
        """The linear of float weight `w` [K, N], given its quantised `weight` and `scale`."""
        return cls({"int8": weight, "scale": scale, "outlier_channels": outlier_channels,
                    "outlier_rows": w[outlier_channels].clone()})

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"int8": self.weight, "scale": self.scale, "outlier_channels": self.outlier_channels,
                "outlier_rows": self.outlier_rows}


class IntMmLinear(Int8Linear):
    """tokens [M, K] @ w [K, N] through `torch._int_mm` (oneDNN s8 x s8 -> s32, fast with VNNI or AMX).

    Weights are quantised per output column, activations per token at run time; the outlier input channels'
    slice of the product (K = len(outlier_channels)) stays in float32 and does not set a token's scale.
    Stored (`tensors`): the int8 weight [K, N], its float32 column scales, the outlier channels and rows.
    """

    @classmethod
    def quantize(cls, w: torch.Tensor, outlier_channels: torch.Tensor) -> "IntMmLinear":
        weight, scale = quantize_columns(w.index_fill(0, outlier_channels, 0.0))
        return cls.from_parts(weight, scale, w, outlier_channels)

    @staticmethod
    def layout(k: int, n: int) -> dict[str, tuple[torch.dtype, list[int]]]:
        """What `tensors` holds for a [K, N] weight: part -> (dtype, shape)."""
        return {"int8": (torch.int8, [k, n]), "scale": (torch.float32, [n]), **_outlier_layout(n)}

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        rows, row_scale = quantize_rows(tokens, self.outlier_channels)
        y = torch._int_mm(rows, self.weight).float().mul_(row_scale).mul_(self.scale)
        return y.addmm_(tokens[:, self.outlier_channels], self.outlier_rows)


class FbgemmLinear(Int8Linear):
    """tokens [M, K] @ w [K, N] through fbgemm's dynamically quantised linear (`torch.ops.quantized`), the
    int8 kernel AVX2 CPUs run fast (u8 x s8 with 16-bit pair sums; `reduce_range` keeps activations to 7 bits
    so those sums never saturate, on every CPU alike).

    fbgemm gives a whole call one activation scale, so each token is first divided by its largest value
    (outlier channels aside): one scale then serves every token as a per-token scale would. Weights per
    output column; outlier input channels in float32, as in `IntMmLinear`. Stored (`tensors`): the int8
    weight [N, K] as fbgemm quantised it, its float64 column scales, the outlier channels and rows; fbgemm's
    packed form is rebuilt from them at load (`linear_prepack`).
    """

    def __init__(self, tensors: dict[str, torch.Tensor]):
        super().__init__(tensors)
        zero_points = torch.zeros(self.scale.numel(), dtype=torch.long)
        with warnings.catch_warnings(), quantized_engine("fbgemm"):
            warnings.simplefilter("ignore")  # torch deprecates quantized tensors, fbgemm's only way in
            qweight = torch._make_per_channel_quantized_tensor(self.weight, self.scale, zero_points, 0)
            self.packed = torch.ops.quantized.linear_prepack(qweight, None)

    @classmethod
    def quantize(cls, w: torch.Tensor, outlier_channels: torch.Tensor) -> "FbgemmLinear":
        kept = w.float().index_fill(0, outlier_channels, 0.0)
        scale = kept.abs().amax(dim=0).clamp_(min=1e-12).div_(127.0).double()
        zero_points = torch.zeros(w.shape[1], dtype=torch.long)
        with warnings.catch_warnings(), quantized_engine("fbgemm"):
            warnings.simplefilter("ignore")
            qweight = torch.quantize_per_channel(kept.t().contiguous(), scale, zero_points, 0, torch.qint8)
        return cls.from_parts(qweight.int_repr(), scale, w, outlier_channels)

    @staticmethod
    def layout(k: int, n: int) -> dict[str, tuple[torch.dtype, list[int]]]:
        """What `tensors` holds for a [K, N] weight: part -> (dtype, shape)."""
        return {"int8": (torch.int8, [n, k]), "scale": (torch.float64, [n]), **_outlier_layout(n)}

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        magnitudes = tokens.abs().index_fill_(1, self.outlier_channels, 0.0)
        row_scale = magnitudes.amax(dim=1, keepdim=True).clamp_(min=1e-12)
        normalised = tokens.div(row_scale).index_fill_(1, self.outlier_channels, 0.0)
        y = torch.ops.quantized.linear_dynamic(normalised, self.packed, True).mul_(row_scale)
        return y.addmm_(tokens[:, self.outlier_channels], self.outlier_rows)


INT8_LINEARS = {"int_mm": IntMmLinear, "fbgemm": FbgemmLinear}

# (flat float32 weights, input_ids, token_type_ids, attention_mask) -> {linear weight name: max |input| per channel}
ChannelMaxima = Callable[..., dict[str, torch.Tensor]]


def int8_weights(flat: dict[str, torch.Tensor]) -> list[str]:
    """The linear weights the fast path runs in int8: every encoder linear's (not the QA head's)."""
    return [name for name in flat if name.startswith("bert.encoder.") and name.endswith(".weight")
            and tensor_kind(name) == "matmul_weights"]


def calibration_batch(shape: BertShape) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded random tokens, two segments, no padding: the outlier channels do not depend on the text."""
    generator = torch.Generator().manual_seed(CALIBRATION_SEED)
    ids = torch.randint(1000, shape.vocab_size, (2, CALIBRATION_LENGTH), generator=generator)
    token_types = (torch.arange(CALIBRATION_LENGTH) >= CALIBRATION_LENGTH // 4).long().expand(2, -1)
    return ids, token_types, torch.ones_like(ids)


def input_outliers(flat: dict[str, torch.Tensor], shape: BertShape, channel_maxima: ChannelMaxima,
                   count: int = OUTLIER_CHANNELS) -> dict[str, torch.Tensor]:
    """For each int8 linear weight, the `count` input channels with the largest activations.

    Pretrained BERTs carry a few hidden channels whose values are 10-30x the rest, for any input: scaling
    each token by its largest value would leave the other channels a handful of int8 levels. The channels
    are found once from a float32 forward over the calibration batch.
    """
    maxima = channel_maxima(flat, *calibration_batch(shape))
    return {name: maxima[name].topk(count).indices.sort().values for name in int8_weights(flat)}


def quantize(flat: dict[str, torch.Tensor], shape: BertShape, kernel: str, channel_maxima: ChannelMaxima) -> dict:
    """{int8 linear weight name: its int8 linear}, calibrated and quantised now."""
    outliers = input_outliers(flat, shape, channel_maxima)
    return {name: INT8_LINEARS[kernel].quantize(flat[name], channels) for name, channels in outliers.items()}


def _save(staging: Staging, linears: dict) -> None:
    by_file: dict[str, dict[str, torch.Tensor]] = {}
    for name, linear in linears.items():
        stored = by_file.setdefault(f"{storage_group(name)}.safetensors", {})
        stored.update({f"{name}:{part}": t.contiguous() for part, t in linear.tensors().items()})
    for file_name, stored in by_file.items():
        staging.write(file_name, save_safetensors(stored))


def _load(cache: VerifiedDirectory, flat: dict[str, torch.Tensor], kernel: str) -> dict:
    """The cached int8 linears, each checked against the float weight it stands for, or `StaleCache`."""
    manifest = cache.manifest()
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise StaleCache(Staleness.MALFORMED, "malformed manifest (no files)")
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for file_name, entry in files.items():
        try:
            stored = load_safetensors(bytes(read_verified(cache.path / file_name, entry)))
        except (KeyError, TypeError) as error:
            raise StaleCache(Staleness.MALFORMED, f"malformed manifest ({type(error).__name__}: {error})") from None
        except SafetensorError as error:
            raise StaleCache(Staleness.MALFORMED, f"{file_name} is not a readable safetensors file ({error})") from None
        for key, t in stored.items():
            name, _, part = key.rpartition(":")
            parts.setdefault(name, {})[part] = t
    expected = int8_weights(flat)
    if sorted(parts) != sorted(expected):
        missing = sorted(set(expected) - set(parts)) or sorted(set(parts) - set(expected))
        raise StaleCache(Staleness.MALFORMED, f"the int8 linears do not match the model's ({missing[0]})")
    linear = INT8_LINEARS[kernel]
    for name in expected:
        for part, (dtype, shape) in linear.layout(*flat[name].shape).items():
            t = parts[name].get(part)
            if t is None or t.dtype != dtype or list(t.shape) != shape:
                raise StaleCache(Staleness.MALFORMED, f"{name}:{part} is not stored as {dtype} {shape}")
    return {name: linear(parts[name]) for name in expected}


def load_or_quantize(flat: dict[str, torch.Tensor], shape: BertShape, kernel: str, channel_maxima: ChannelMaxima,
                     cache: VerifiedDirectory | None = None) -> tuple[dict, Outcome | None]:
    """{int8 linear weight name: its int8 linear} for the float32 weights `flat`: from `cache`'s directory
    for this kernel when it verifies, else quantised (calibrating with `channel_maxima`) and written there;
    where that directory cannot be written (a read-only cache root), quantised in memory, as the outcome's
    detail says. Without a cache, quantised every time (outcome None)."""
    if cache is None:
        return quantize(flat, shape, kernel, channel_maxima), None
    directory = dataclasses.replace(cache, path=cache.path / kernel,
                                    header={"int8_format_version": FORMAT_VERSION, "kernel": kernel, **cache.header})

    def build(staging: Staging) -> dict:
        linears = quantize(flat, shape, kernel, channel_maxima)
        _save(staging, linears)
        return linears

    try:
        return directory.load_or_build(lambda: _load(directory, flat, kernel), build, built="quantised")
    except UnwritableCache as error:
        linears = quantize(flat, shape, kernel, channel_maxima)
        return linears, Outcome(False, directory.path, f"quantised in memory ({error})")
