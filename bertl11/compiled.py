"""The fast path's compiled forward: exported once, int8 through PT2E where chosen, compiled ahead of time by
AOTInductor with frozen weights, and cached beside the weight cache.

Eager torch runs every bias, GELU, residual add, layernorm and activation quantisation as its own pass over
memory; inductor fuses them into the GEMMs' epilogues and prologues, and with frozen weights oneDNN packs each
weight once. The steps (all torch's own stack):

    torch.export      the backend's forward as a graph, batch and sequence length dynamic (one compile serves
                      every bucketed batch shape)
    PT2E (torchao)    for int8: `X86InductorQuantizer`, dynamic: weights int8 per output channel, activations
                      quantised per call (per tensor, asymmetric u8); the encoder linears become oneDNN's
                      quantised linear (`onednn.qlinear_pointwise`, VNNI or AMX where the CPU has them), the
                      quantisation fused into the op before it. The QA head stays float.
    AOTInductor       the graph as C++ and one shared library, packaged (`.pt2`: a zip archive holding the
                      library with the frozen weights inside it; no pickle) and loaded without a compiler

The package goes into a verified directory (`verified.py`) beside the weight cache,
`<RUN CONFIG>/compiled/<variant>/forward.pt2`, its manifest keyed like the weight cache (format version,
run config, model, source fingerprint) plus this module's format version, the variant, torch's version and
the CPU it was built for; a later process verifies it and loads it in a second or two instead of compiling
again (minutes). Where the cache root cannot be written, the package is compiled into a temporary directory,
loaded from there and the load detail says so.

Inductor needs a C++ compiler while compiling (not to load a package). Where none is found, torchao is
missing, the policy allows only a cached package, or compiling fails, `load_or_compile` raises
`CompileUnavailable` with the reason in one line, and the backend runs eager.

The module to compile comes from the backend (`backends.fast`), which this module does not import.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import torch

from .verified import Outcome, StaleCache, Staleness, UnwritableCache, VerifiedDirectory

# Bump whenever what a package holds changes (the export, the quantisation, the inductor settings).
FORMAT_VERSION = 1
PACKAGE = "forward.pt2"
INT8 = "qlinear"  # the variant whose encoder linears are oneDNN's quantised linear
# What a run asks of the compiled forward: load it or compile it now ("build"); use it only when the cache
# already holds it, else run eager ("cached": a short run, which a compile would not pay for); or run eager
# ("never": op by op, as the profiler times it).
BUILD, CACHED, NEVER = "build", "cached", "never"
POLICIES = (BUILD, CACHED, NEVER)
# The example batch export traces: batch and sequence above 1, which export would otherwise specialise.
EXAMPLE_BATCH, EXAMPLE_SEQ = 2, 64
INDUCTOR_SETTINGS = {
    "freezing": True,  # weights become constants: oneDNN prepacks them, inductor folds what depends on them only
    "cpp.dynamic_threads": True,  # kernels take torch's thread count at run time: one package serves any --threads
}


class CompileUnavailable(Exception):
    """The compiled forward cannot be had here or now; the message says why in one line."""


def compiler() -> str | None:
    """The C++ compiler inductor would run (`$CXX`, else g++), where it is on the PATH."""
    return shutil.which(os.environ.get("CXX", "g++"))


def example_inputs(vocab_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded token ids, two segments, no padding: what export traces and PT2E runs once."""
    generator = torch.Generator().manual_seed(EXAMPLE_SEQ)
    ids = torch.randint(1000, vocab_size, (EXAMPLE_BATCH, EXAMPLE_SEQ), generator=generator)
    token_types = (torch.arange(EXAMPLE_SEQ) >= EXAMPLE_SEQ // 4).long().expand(EXAMPLE_BATCH, -1).contiguous()
    return ids, token_types, torch.ones_like(ids)


def _dynamic_shapes(max_seq: int) -> tuple[dict[int, object], ...]:
    batch = torch.export.Dim("batch", min=1)
    seq = torch.export.Dim("seq", min=1, max=max_seq)
    return ({0: batch, 1: seq},) * 3


@contextmanager
def _quiet():
    """torchao and inductor warn about things that do not concern a CPU user (CUDA extensions not loaded,
    deprecations); their warnings would bury ours."""
    loggers = [logging.getLogger(name) for name in ("torchao", "torch._inductor", "torch._export", "torch.export")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _quantize(module: torch.nn.Module, example: tuple, float_linears: list[str]) -> torch.nn.Module:
    """The exported module with dynamic int8 linears (PT2E, x86 inductor quantizer); `float_linears` (module
    names) stay float."""
    try:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86
    except ImportError as error:
        raise CompileUnavailable(f"int8 needs torchao's PT2E quantisation ({error}); pip install torchao") from None
    quantizer = x86.X86InductorQuantizer()
    quantizer.set_global(x86.get_default_x86_inductor_quantization_config(is_dynamic=True))
    for name in float_linears:
        quantizer.set_module_name_qconfig(name, None)
    prepared = prepare_pt2e(module, quantizer)
    prepared(*example)  # dynamic quantisation observes only the weights, but the observers run once
    return convert_pt2e(prepared)


def compile_package(module: torch.nn.Module, example: tuple, max_seq: int, int8: bool, float_linears: list[str],
                    path: Path) -> None:
    """Export `module` (forward(input_ids, token_type_ids, attention_mask) -> (start, end)), quantise its linears
    to int8 where asked, and write the AOTInductor package to `path`, or `CompileUnavailable` saying why not."""
    found = compiler()
    if found is None:
        raise CompileUnavailable(f"no C++ compiler ({os.environ.get('CXX', 'g++')}) on the PATH: inductor needs one to compile")
    dynamic = _dynamic_shapes(max_seq)
    try:
        with _quiet(), torch.no_grad():
            exported = torch.export.export(module, example, dynamic_shapes=dynamic, strict=False)
            if int8:
                quantized = _quantize(exported.module(), example, float_linears)
                exported = torch.export.export(quantized, example, dynamic_shapes=dynamic, strict=False)
            torch._inductor.aoti_compile_and_package(exported, package_path=str(path), inductor_configs=INDUCTOR_SETTINGS)
    except CompileUnavailable:
        raise
    except Exception as error:  # inductor's failures take many types (a compiler error, a lowering it lacks)
        first_line = (str(error).strip().splitlines() or [""])[0][:300]
        raise CompileUnavailable(f"compiling failed with {found} ({type(error).__name__}: {first_line})") from None


def load_package(path: Path) -> Callable:
    """The compiled forward in a package: (input_ids, token_type_ids, attention_mask) -> (start, end)."""
    with _quiet():
        return torch._inductor.aoti_load_package(str(path))


def _load(directory: VerifiedDirectory) -> Callable:
    directory.verify(required=[PACKAGE])
    try:
        return load_package(directory.path / PACKAGE)
    except Exception as error:  # a package this torch cannot load (its loader raises RuntimeError and others)
        raise StaleCache(Staleness.MALFORMED, f"{PACKAGE} does not load ({type(error).__name__})") from None


def load_or_compile(build_module: Callable[[], torch.nn.Module], vocab_size: int, max_seq: int, variant: str,
                    float_linears: list[str], cache: VerifiedDirectory, policy: str = BUILD) -> tuple[Callable, Outcome]:
    """The compiled forward of the module `build_module` makes: from `cache`'s directory for this variant when it
    verifies, else (policy BUILD) compiled and written there; or `CompileUnavailable` saying why not.

    variant: the GEMMs' dtype ("float32", "bfloat16") or INT8 (PT2E int8 linears, `float_linears` excepted).
    """
    directory = dataclasses.replace(cache, path=cache.path / variant, header={
        "compiled_format_version": FORMAT_VERSION, "variant": variant, "torch": torch.__version__,
        "cpu": torch.backends.cpu.get_cpu_capability(), **cache.header})
    if policy == CACHED:
        try:
            return _load(directory), Outcome(True, directory.path, f"loaded from {directory.path}")
        except StaleCache as error:
            raise CompileUnavailable(f"not compiled yet ({error}), and compiling would take longer than this run") from None

    def compile_to(path: Path) -> None:
        compile_package(build_module(), example_inputs(vocab_size), max_seq, variant == INT8, float_linears, path)

    def build(staging) -> None:
        compile_to(staging.path / PACKAGE)
        staging.add(PACKAGE)

    try:
        forward, outcome = directory.load_or_build(lambda: _load(directory), build, built="compiled")
    except UnwritableCache as error:
        scratch = Path(tempfile.mkdtemp(prefix="bertl11-compiled-"))
        try:
            compile_to(scratch / PACKAGE)
            return load_package(scratch / PACKAGE), Outcome(False, scratch, f"compiled in memory ({error})")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    if outcome.hit:
        return forward, outcome
    return load_package(directory.path / PACKAGE), outcome
