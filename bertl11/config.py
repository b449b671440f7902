"""Model shape and run configuration, as data.

`BertShape` is the part of an HF `BertConfig` the model needs. `RunConfig` is one of the seed's named
configurations (BFLOAT8_B-SHARDED, ...): which tensors are held in BFLOAT8_B or BFLOAT16, where the TT
backend places them, and the compute kernel settings each op runs with (`ComputeSettings`, `SEED_COMPUTE`).
The torch backend simulates the same numerics (`fpu.py` holds the arithmetic).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .errors import UserError
from .ops import BATCHED_MATMUL, HEAD, LINEAR, OPS, TENSORS

SUPPORTED_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh")
# Where a model runs (`QAModel.load(device=...)`, `--device`): torch on the host or a GPU, or a Tenstorrent card.
DEVICES = ("cpu", "cuda", "tt")


@dataclass(frozen=True)
class BertShape:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    hidden_act: str
    pad_token_id: int = 0

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise UserError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_heads}"
            )
        if self.hidden_act not in SUPPORTED_ACTIVATIONS:
            raise UserError(f"hidden_act {self.hidden_act!r} is not supported (use one of {', '.join(SUPPORTED_ACTIVATIONS)})")

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def from_hf(cls, config) -> "BertShape":
        """Read the fields from an HF `BertConfig`, refusing anything that is not BERT."""
        model_type = getattr(config, "model_type", None)
        if model_type != "bert":
            raise UserError(f"model_type is {model_type!r}, not 'bert': bertl11 runs BERT models only")
        if getattr(config, "position_embedding_type", "absolute") != "absolute":
            raise UserError("only absolute position embeddings are supported")
        return cls(
            vocab_size=config.vocab_size,
            hidden_size=config.hidden_size,
            num_layers=config.num_hidden_layers,
            num_heads=config.num_attention_heads,
            intermediate_size=config.intermediate_size,
            max_position_embeddings=config.max_position_embeddings,
            type_vocab_size=config.type_vocab_size,
            layer_norm_eps=config.layer_norm_eps,
            hidden_act=config.hidden_act,
            pad_token_id=config.pad_token_id if config.pad_token_id is not None else 0,
        )


FLOAT32, BFLOAT16, BFLOAT8_B = "float32", "bfloat16", "bfloat8_b"
DRAM, L1, SHARDED = "DRAM", "L1", "SHARDED"

# The tensors the seed gives their own dtype in its MIXED_PRECISION configs (tt/model_config.py):
# the QKV input, the pre-softmax output, the attention mask, the self-output output, the layernorm
# outputs, the FF2 output and the QA head weights stay in BFLOAT16 while everything else is BFLOAT8_B.
MIXED_BF16_TENSORS = frozenset(
    {"qkv_input", "q_kt_output", "attention_mask", "self_output_output", "layernorm_output", "ff2_output", "qa_head_weights"}
)
# BFLOAT8_B-SHARDED hands the sharded softmax its mask as a bfloat16 row-major tensor (OP4_SOFTMAX_ATTENTION_MASK_DTYPE).
SHARDED_BF16_TENSORS = frozenset({"attention_mask"})

# Math fidelity: how many of the matrix engine's phases a multiply runs (docs/sources.md, "The Tensix FPU").
# LoFi multiplies SrcA's 5 and SrcB's 7 most significant bits; each further phase adds a pair of low parts.
MATH_FIDELITIES = ("LoFi", "HiFi2", "HiFi3", "HiFi4")
# Architectures and the compute kernel config fields their ttnn class has: Grayskull's (seed era; ttnn 0.81
# no longer runs Grayskull) has no fp32 destination and no packer accumulation.
KERNEL_CONFIG_FIELDS = {
    "grayskull": ("math_fidelity", "math_approx_mode"),
    "wormhole_b0": ("math_fidelity", "math_approx_mode", "fp32_dest_acc_en", "packer_l1_acc"),
    "blackhole": ("math_fidelity", "math_approx_mode", "fp32_dest_acc_en", "packer_l1_acc"),
}


def require_math_fidelity(name: str) -> str:
    if name not in MATH_FIDELITIES:
        raise UserError(f"math fidelity {name!r}: choose one of {', '.join(MATH_FIDELITIES)} (the matrix engine runs 1 to 4 phases)")
    return name


@dataclass(frozen=True)
class ComputeSettings:
    """One op's compute kernel config, as ttnn's `WormholeComputeKernelConfig` holds it.

    math_fidelity:    matrix-engine phases per multiply (matmuls, and the FPU's eltwise multiply and reduce)
    math_approx_mode: the SFPU's approximate exp, reciprocal, rsqrt, GELU (where the op has both)
    fp32_dest_acc_en: the destination registers hold float32 rather than bfloat16
    packer_l1_acc:    matmul partial sums across K blocks are added by the packer in L1 rather than reloaded
    """

    math_fidelity: str
    math_approx_mode: bool
    fp32_dest_acc_en: bool
    packer_l1_acc: bool

    def __post_init__(self):
        require_math_fidelity(self.math_fidelity)

    def describe(self) -> str:
        """In a few words: the fidelity, then what is on ("LoFi, L1 acc", "HiFi4, approx")."""
        flags = [name for name, on in (("approx", self.math_approx_mode), ("fp32 dest", self.fp32_dest_acc_en),
                                       ("L1 acc", self.packer_l1_acc)) if on]
        return ", ".join([self.math_fidelity, *flags])

    def kernel_config(self, arch: str) -> dict:
        """The compute kernel config's fields for a chip architecture (`cards.Card.arch`), fidelity by name:
        what ttnn's config class for that architecture takes."""
        try:
            fields = KERNEL_CONFIG_FIELDS[arch]
        except KeyError:
            raise UserError(f"no compute kernel config for architecture {arch!r}; "
                            f"bertl11 knows {', '.join(KERNEL_CONFIG_FIELDS)}") from None
        return {name: getattr(self, name) for name in fields}


# The settings each op ran with on ttnn 0.81 given the seed's code (docs/sources.md, "Compute kernel configs"). A
# passed config replaces the op's defaults whole, so the fields the seed left out take the class's own defaults.
# - matmuls with a program config and no compute config: ttnn's matmul defaults (LoFi, approximations off, packer
#   L1 accumulation on; fp32 only for float32 outputs);
# - softmax, no compute config: HiFi4 with the approximate exp and reciprocal;
# - the encoder's add+layernorms: the seed passes WormholeComputeKernelConfig(math_fidelity=HiFi4), whose other
#   fields default to approximate mode on, fp32 destination off;
# - the embeddings' layernorm, no compute config: ttnn's layernorm defaults (HiFi4, exact, fp32 destination).
# The QA head has no program config: its fidelity depends on its operands' dtypes (`RunConfig.compute`).
_MATMUL = ComputeSettings("LoFi", math_approx_mode=False, fp32_dest_acc_en=False, packer_l1_acc=True)
SEED_COMPUTE: dict[str, ComputeSettings] = {
    "embeddings": ComputeSettings("HiFi4", math_approx_mode=False, fp32_dest_acc_en=True, packer_l1_acc=False),
    "qkv": _MATMUL,
    "q_kt": _MATMUL,
    "softmax": ComputeSettings("HiFi4", math_approx_mode=True, fp32_dest_acc_en=False, packer_l1_acc=False),
    "attention_v": _MATMUL,
    "self_output": _MATMUL,
    "attention_add_layernorm": ComputeSettings("HiFi4", math_approx_mode=True, fp32_dest_acc_en=False, packer_l1_acc=False),
    "ff1_gelu": _MATMUL,
    "ff2": _MATMUL,
    "ffn_add_layernorm": ComputeSettings("HiFi4", math_approx_mode=True, fp32_dest_acc_en=False, packer_l1_acc=False),
    "qa_head": _MATMUL,
}
# Ops that run on the matrix engine as matmuls: what --math-fidelity sets.
MATMUL_KINDS = (LINEAR, BATCHED_MATMUL, HEAD)


@dataclass(frozen=True)
class RunConfig:
    """One named numerics + placement configuration.

    weights:      dtype of the matmul weights and biases (QKV, self-output, FF1, FF2, QA head)
    activations:  dtype of op outputs on the device
    bf16_tensors: tensors kept in BFLOAT16 even when `weights`/`activations` say BFLOAT8_B (MIXED configs)
    memory:       where the TT backend keeps activations (DRAM, L1 or block-sharded L1)

    Layernorm gamma/beta and embedding tables are always BFLOAT16 (FLOAT32 in the FLOAT32 config).
    """

    name: str
    weights: str
    activations: str
    memory: str
    bf16_tensors: frozenset = field(default_factory=frozenset)
    torch_only: bool = False
    math_fidelity: str | None = None  # overrides every matmul's fidelity (--math-fidelity); None: the seed's

    def __post_init__(self):
        unknown = set(self.bf16_tensors) - TENSORS
        if unknown:
            raise ValueError(f"{self.name}: no tensor is named {', '.join(sorted(unknown))} (see ops.TENSORS)")
        if self.math_fidelity is not None:
            if self.torch_only:
                raise UserError(f"--math-fidelity: {self.name} is the exact reference, computed without the matrix "
                                "engine's phases; choose a Tenstorrent config")
            require_math_fidelity(self.math_fidelity)

    def with_math_fidelity(self, math_fidelity: str | None) -> "RunConfig":
        """This config with every matmul at `math_fidelity` (None: as the seed runs them)."""
        return replace(self, math_fidelity=math_fidelity)

    def compute(self, op: str) -> ComputeSettings | None:
        """The compute kernel settings `op` runs with (`SEED_COMPUTE`, the QA head's fidelity rule, then
        --math-fidelity on the matmuls); None for data movement and for the exact FLOAT32 reference."""
        settings = SEED_COMPUTE.get(op)
        if settings is None or self.torch_only:
            return None
        if op == "qa_head":
            # ttnn's matmul without a program config runs HiFi2 unless both operands are block-float (then LoFi).
            block_float = self.dtype_of("layernorm_output") == self.dtype_of("qa_head_weights") == BFLOAT8_B
            settings = replace(settings, math_fidelity="LoFi" if block_float else "HiFi2")
        if self.math_fidelity is not None and OPS[op].kind in MATMUL_KINDS:
            settings = replace(settings, math_fidelity=self.math_fidelity)
        return settings

    def kernel_config(self, op: str, arch: str) -> dict | None:
        """The compute kernel config fields the ttnn backend passes to `op` on a chip of `arch`
        (`ComputeSettings.kernel_config`); None where the op takes none (data movement)."""
        settings = self.compute(op)
        return None if settings is None else settings.kernel_config(arch)

    def dtype_of(self, tensor: str) -> str:
        """The dtype a named tensor (`ops.TENSORS`) is held in, e.g. `dtype_of("qa_head_weights")`."""
        if tensor not in TENSORS:
            raise ValueError(f"no tensor is named {tensor!r}; the run config names {', '.join(sorted(TENSORS))}")
        if tensor == OPS["softmax"].output:
            tensor = OPS["q_kt"].output  # the softmax runs in place: its output keeps the scores' dtype
        if tensor in self.bf16_tensors:
            return BFLOAT16
        if tensor in ("layernorm_weights", "embedding_weights"):
            return FLOAT32 if self.weights == FLOAT32 else BFLOAT16
        if tensor.endswith("_weights"):
            return self.weights
        return self.activations

    @property
    def compute_dtype(self) -> str:
        """What the torch backend computes in: float32 only for the exact reference."""
        return FLOAT32 if self.weights == FLOAT32 else BFLOAT16


RUN_CONFIGS: dict[str, RunConfig] = {
    c.name: c
    for c in (
        RunConfig("BFLOAT8_B-SHARDED", BFLOAT8_B, BFLOAT8_B, SHARDED, SHARDED_BF16_TENSORS),
        RunConfig("BFLOAT8_B-DRAM", BFLOAT8_B, BFLOAT8_B, DRAM),
        RunConfig("BFLOAT8_B-L1", BFLOAT8_B, BFLOAT8_B, L1),
        RunConfig("BFLOAT16-DRAM", BFLOAT16, BFLOAT16, DRAM),
        RunConfig("BFLOAT16-L1", BFLOAT16, BFLOAT16, L1),
        RunConfig("MIXED_PRECISION_BATCH8", BFLOAT8_B, BFLOAT8_B, L1, MIXED_BF16_TENSORS),
        RunConfig("MIXED_PRECISION_BATCH9", BFLOAT8_B, BFLOAT8_B, L1, MIXED_BF16_TENSORS),
        RunConfig("FLOAT32", FLOAT32, FLOAT32, DRAM, torch_only=True),
    )
}
DEFAULT_RUN_CONFIG = "BFLOAT8_B-SHARDED"
# The configs a Tenstorrent card runs (FLOAT32 is the torch-only exact reference).
TT_CONFIGS = tuple(name for name, config in RUN_CONFIGS.items() if not config.torch_only)


def get_run_config(name: str, math_fidelity: str | None = None) -> RunConfig:
    """A named config, with every matmul at `math_fidelity` if given (--math-fidelity)."""
    try:
        config = RUN_CONFIGS[name]
    except KeyError:
        raise UserError(f"unknown config {name!r}; choose one of: {', '.join(RUN_CONFIGS)}") from None
    return config if math_fidelity is None else config.with_math_fidelity(math_fidelity)
