"""Model shape and run configuration, as data.

`BertShape` is the part of an HF `BertConfig` the model needs. `RunConfig` is one of the seed's named
configurations (BFLOAT8_B-SHARDED, ...): which tensors are held in BFLOAT8_B or BFLOAT16, and where the TT
backend places them. The torch backend simulates the same numerics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import UserError
from .ops import TENSORS

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

    def __post_init__(self):
        unknown = set(self.bf16_tensors) - TENSORS
        if unknown:
            raise ValueError(f"{self.name}: no tensor is named {', '.join(sorted(unknown))} (see ops.TENSORS)")

    def dtype_of(self, tensor: str) -> str:
        """The dtype a named tensor (`ops.TENSORS`) is held in, e.g. `dtype_of("qa_head_weights")`."""
        if tensor not in TENSORS:
            raise ValueError(f"no tensor is named {tensor!r}; the run config names {', '.join(sorted(TENSORS))}")
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
        RunConfig("BFLOAT8_B-SHARDED", BFLOAT8_B, BFLOAT8_B, SHARDED),
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


def get_run_config(name: str) -> RunConfig:
    try:
        return RUN_CONFIGS[name]
    except KeyError:
        raise UserError(f"unknown config {name!r}; choose one of: {', '.join(RUN_CONFIGS)}") from None
