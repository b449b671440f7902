"""Published Tenstorrent performance figures the estimate (`estimate.py`) is validated against, each with its
source (docs/sources.md section 9), which of them its fitted constants were fitted on, and the error bound a test
holds each group to.

Two kinds: rows of tt-metal's GEMM benchmark (one sharded 2D multicast matmul: in0 and the output block-sharded in
L1, in1 in DRAM; device-based utilisation = ideal cycles / the math core's measured cycles), and whole BERT models'
samples per second on the device or end to end.
"""

from __future__ import annotations

from dataclasses import dataclass

from .cards import CARDS, DEST_TILES_HALF_SYNC, Card
from .config import BFLOAT8_B, BFLOAT16
from .plan import BERT_LARGE, MULTICAST, TILE, EncoderShape, MatmulProgram

GEMM_SOURCE = "tt-metal tech_reports/GEMM_FLOPS/GEMM_FLOPS.md, traced rows, in0 and output sharded in L1"


@dataclass(frozen=True)
class GemmAnchor:
    """One row of the GEMM benchmark: shapes as the benchmark scales them (M = m x grid rows, K and N = k, n x grid
    columns), its K-block divisor, and the published device-based utilisation (%)."""

    card: str
    m: int
    k: int
    n: int
    in0_block_w_div: int
    dtype: str
    fidelity: str
    utilisation: float
    fitted: bool  # used to fit the constants (the rest validate them)

    @property
    def name(self) -> str:
        return f"{self.card} {self.m}x{self.k}x{self.n} {self.dtype} {self.fidelity}"

    def program(self) -> MatmulProgram:
        """The benchmark's own program config: the card's whole grid, K split over the grid columns and divided
        once more by in0_block_w_div, subblock height 1 (a sharded output) and the widest width up to 8 that
        divides per_core_N (test_benchmark.py, `get_subblock_sizes`)."""
        card = CARDS[self.card]
        x, y = card.grid
        per_core_n = self.n // x // TILE
        width = max(w for w in range(1, DEST_TILES_HALF_SYNC + 1) if per_core_n % w == 0)
        return MatmulProgram(MULTICAST, card.grid, self.k // x // TILE // self.in0_block_w_div, 1, width,
                             self.m // y // TILE, per_core_n)


def _gemm_rows(card: Card, dtype: str, fidelity: str, fitted: bool, shapes, utilisations) -> tuple[GemmAnchor, ...]:
    x, y = card.grid
    return tuple(GemmAnchor(card.name, m * y, k * x, n * x, div, dtype, fidelity, u, fitted)
                 for (m, k, n, div), u in zip(shapes, utilisations, strict=True))


# The benchmark's shapes per unit of grid (m, k, n) and in0_block_w divisor, in its table order (test_benchmark.py).
_SHAPES_BF16 = ((64, 64, 64, 1), (64, 128, 128, 1), (64, 128, 256, 1), (128, 128, 128, 1), (128, 128, 256, 1),
                (128, 256, 256, 1), (256, 256, 256, 1), (256, 256, 384, 1), (256, 384, 384, 2), (384, 384, 384, 4))
_SHAPES_BFP8 = ((64, 64, 64, 1), (64, 128, 128, 1), (64, 128, 256, 1), (128, 128, 128, 1), (128, 128, 256, 1),
                (128, 256, 256, 1), (256, 256, 256, 1), (256, 256, 384, 1), (256, 384, 384, 1), (384, 384, 384, 2),
                (384, 384, 512, 2))

# Fitted on the two extremes of each card (BFLOAT8_B at LoFi: the unpacker's limit; BFLOAT16 at HiFi4: the
# engine's); the HiFi2 rows of both dtypes are held out.
GEMM_ANCHORS: tuple[GemmAnchor, ...] = (
    *_gemm_rows(CARDS["n150"], BFLOAT16, "HiFi2", False, _SHAPES_BF16,
                (20.61, 31.42, 34.04, 47.79, 53.61, 57.63, 64.87, 64.50, 65.52, 64.56)),
    *_gemm_rows(CARDS["n150"], BFLOAT16, "HiFi4", True, _SHAPES_BF16,
                (40.77, 61.25, 65.52, 77.17, 80.67, 85.03, 89.59, 90.18, 92.03, 92.40)),
    *_gemm_rows(CARDS["n150"], BFLOAT8_B, "HiFi2", False, _SHAPES_BFP8,
                (26.13, 43.97, 51.64, 67.47, 72.10, 78.55, 84.30, 85.53, 86.94, 88.56, 89.15)),
    *_gemm_rows(CARDS["n150"], BFLOAT8_B, "LoFi", True, _SHAPES_BFP8,
                (13.16, 23.14, 27.54, 39.72, 45.99, 52.68, 58.89, 59.29, 61.18, 61.56, 63.26)),
    *_gemm_rows(CARDS["p150"], BFLOAT16, "HiFi2", False, _SHAPES_BF16,
                (20.59, 44.56, 54.64, 73.03, 78.10, 82.50, 87.05, 87.71, 88.81, 88.42)),
    *_gemm_rows(CARDS["p150"], BFLOAT16, "HiFi4", True, _SHAPES_BF16,
                (41.34, 76.58, 81.82, 85.19, 88.02, 90.53, 93.17, 93.49, 94.08, 93.83)),
    *_gemm_rows(CARDS["p150"], BFLOAT8_B, "HiFi2", False, _SHAPES_BFP8,
                (22.39, 52.10, 68.21, 74.43, 79.44, 84.74, 88.28, 88.79, 89.93, 90.26, 90.75)),
    *_gemm_rows(CARDS["p150"], BFLOAT8_B, "LoFi", True, _SHAPES_BFP8,
                (11.17, 26.15, 34.69, 51.90, 66.05, 76.30, 83.15, 83.75, 85.89, 86.53, 87.49)),
)

DEVICE, UNTRACED, TRACED = "device", "end to end", "end to end, traced"

# Anchor groups and the largest error a test accepts in each (the error the model reaches, rounded up): the seed's
# own device figures, end-to-end figures, BERT-large on the same program configs with newer tt-metal software, and
# implementations whose programs differ from bertl11's plan (shown for what they say, held loosely).
GEMM_FITTED, GEMM_HELD_OUT = "GEMM rows, fitted", "GEMM rows, held out"
SEED, END_TO_END, NEWER, OTHER = ("the seed's device figures", "end to end", "same program configs, newer software",
                                  "other program configs")
BOUNDS = {GEMM_FITTED: 0.10, GEMM_HELD_OUT: 0.30, SEED: 0.10, END_TO_END: 0.10, NEWER: 0.25, OTHER: 0.65}

BERT_BASE = EncoderShape(seq=384, hidden=768, heads=12, intermediate=3072)


@dataclass(frozen=True)
class ModelAnchor:
    """A whole model's published samples per second: on the device (batch / the sum of kernel durations, as
    tt-metal's device perf tests count it) or end to end."""

    name: str
    card: str  # the card entry the estimate runs on (see `note` where it stands in for another)
    batch: int
    config: str
    samples_per_s: float
    kind: str
    group: str
    source: str
    note: str = ""
    shape: EncoderShape = BERT_LARGE
    layers: int = 24
    fitted: bool = False


_SEED = "tt-metal models/demos/metal_BERT_large_11"
MODEL_ANCHORS: tuple[ModelAnchor, ...] = (
    ModelAnchor("BERT-large, Grayskull, batch 12", "e150", 12, "BFLOAT8_B-SHARDED", 400, DEVICE, SEED,
                f"{_SEED}/tests/test_perf_device_bert.py", "README and older tests: 406-410"),
    ModelAnchor("BERT-large, Wormhole, batch 8", "n150", 8, "BFLOAT8_B-SHARDED", 340, DEVICE, SEED,
                f"{_SEED}/tests/test_perf_device_bert.py; tt-metal README", "N300-based; one chip, 8x8 grid (n150 entry)"),
    ModelAnchor("BERT-large, Wormhole, batch 7", "n150", 7, "BFLOAT8_B-SHARDED", 280, DEVICE, SEED,
                f"{_SEED}/tests/test_perf_device_bert.py",
                "weak: the test profiles the batch-8 run and divides by 7; never enforced (skipped on Wormhole)"),
    ModelAnchor("BERT-large, Grayskull, batch 12", "e150", 12, "BFLOAT8_B-SHARDED", 370, UNTRACED, END_TO_END,
                "tt-metal README (Grayskull model table)", "fits the host cost per op", fitted=True),
    ModelAnchor("BERT-large, Wormhole, batch 8", "n150", 8, "BFLOAT8_B-SHARDED", 270, UNTRACED, END_TO_END,
                "tt-metal README (Wormhole model table)", "N300-based"),
    ModelAnchor("BGE-large-en-v1.5 (BERT-large shapes), Wormhole, batch 8", "n150", 8, "BFLOAT8_B-SHARDED", 400, DEVICE, NEWER,
                "tt-metal models/demos/wormhole/bge_large_en/tests/perf/test_bge_perf.py",
                "2025 software; same program configs as the seed's"),
    ModelAnchor("Sentence-BERT (BERT-base shapes), Wormhole, batch 8", "n150", 8, "BFLOAT8_B-SHARDED", 440.4, DEVICE, OTHER,
                "tt-metal models/demos/sentence_bert/tests/perf/test_sentence_bert_perf.py",
                "program configs as bertl11's plan for BERT-base but attention.V on ttnn's default program; the test "
                "also counts its mean pooling", BERT_BASE, 12),
    ModelAnchor("Sentence-BERT (BERT-base shapes), Wormhole, batch 8", "n150", 8, "BFLOAT8_B-SHARDED", 408, TRACED, OTHER,
                "tt-metal models/demos/sentence_bert/README.md", "trace + 2 command queues", BERT_BASE, 12),
    ModelAnchor("BERT-large, Grayskull, batch 8", "e150", 8, "MIXED_PRECISION_BATCH8", 170, DEVICE, OTHER,
                f"{_SEED}/tests/test_perf_device_bert.py",
                "the seed ran this config through fixed-shape fallback matmuls on a 12 x batch grid "
                "(tt/custom_matmuls.py) and interleaved default programs; bertl11's plan differs"),
)


@dataclass(frozen=True)
class AnchorResult:
    """An anchor beside the estimate: error = predicted / published - 1, in the anchor's own unit."""

    name: str
    kind: str
    unit: str
    published: float
    predicted: float
    group: str
    source: str
    note: str
    fitted: bool

    @property
    def error(self) -> float:
        return self.predicted / self.published - 1

    @property
    def bound(self) -> float:
        return BOUNDS[self.group]

    def as_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "unit": self.unit, "published": self.published,
                "predicted": round(self.predicted, 2), "error": round(self.error, 4), "group": self.group,
                "bound": self.bound, "fitted": self.fitted, "source": self.source, "note": self.note}


def evaluate() -> list[AnchorResult]:
    """Every anchor, predicted: the model anchors first, then the GEMM rows."""
    from .estimate import estimate_matmul, estimate_model

    results = []
    for a in MODEL_ANCHORS:
        estimate = estimate_model(a.card, a.batch, a.config, a.shape, a.layers)
        seconds = {DEVICE: estimate.device_ns, UNTRACED: estimate.untraced_ns, TRACED: estimate.traced_ns}[a.kind] / 1e9
        results.append(AnchorResult(a.name, a.kind, "samples/s", a.samples_per_s, a.batch / seconds, a.group, a.source,
                                    a.note, a.fitted))
    for a in GEMM_ANCHORS:
        predicted = estimate_matmul(a.card, a.m, a.k, a.n, a.dtype, a.fidelity, a.program())
        results.append(AnchorResult(a.name, "device utilisation", "%", a.utilisation, 100 * predicted.utilisation,
                                    GEMM_FITTED if a.fitted else GEMM_HELD_OUT, GEMM_SOURCE, "", a.fitted))
    return results


def anchor_table(results: list[AnchorResult]) -> str:
    """The anchors as a markdown table (docs/performance.md holds this output), then each group's largest error."""
    lines = ["| anchor | kind | published | predicted | error | group | fitted | source |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        note = f" ({r.note})" if r.note else ""
        lines.append(f"| {r.name} | {r.kind} | {r.published:g} {r.unit} | {r.predicted:.1f} {r.unit} | {100 * r.error:+.1f}% "
                     f"| {r.group} | {'yes' if r.fitted else 'no'} | {r.source}{note} |")
    lines += ["", "| group | anchors | largest error | bound a test holds |", "| --- | --- | --- | --- |"]
    for group, bound in BOUNDS.items():
        errors = [abs(r.error) for r in results if r.group == group]
        lines.append(f"| {group} | {len(errors)} | {100 * max(errors):.1f}% | {100 * bound:.0f}% |")
    return "\n".join(lines)
