"""A fine-tuning recipe: the settings of one run, as data (`Recipe`), and the precision it trains in.

HF's `BertForQuestionAnswering` loss, torch's AdamW, transformers' linear warm-up/decay schedule, on the CPU or,
with `--device cuda`, on a GPU (what SQuAD v2 train's 130k questions need: on 2 CPU cores one epoch is hours).
Word embeddings are frozen by default: 7.5k questions cannot improve a 30k-word table, and freezing it halves
the optimiser's work.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError, require_at_least

PRECISIONS = ("auto", "float32", "bfloat16")
TRAINING_DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Recipe:
    epochs: float = 3.0
    lr: float = 2e-4
    warmup: float = 0.1  # share of the steps spent warming up
    weight_decay: float = 0.01
    batch_size: int = 32
    max_seq_len: int = 384
    doc_stride: int = 128
    seed: int = 11
    validation_articles: int = 2
    freeze_word_embeddings: bool = True
    all_answers: bool = False  # every distinct annotator span is a target (dev questions have up to 5), not only the first
    deletion_negatives: bool = False  # also ask each answerable question of its paragraph without the answer's sentences
    precision: str = "auto"  # bfloat16 autocast where bfloat16 GEMMs are fast here (`autocast_dtype`), else float32

    def __post_init__(self):
        for name in ("epochs", "lr"):
            if not getattr(self, name) > 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive, not {getattr(self, name)}")
        if not 0 <= self.warmup < 1:
            raise UserError(f"--warmup must be in [0, 1), not {self.warmup}")
        require_at_least("--batch-size", self.batch_size)
        if self.precision not in PRECISIONS:
            raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")


def autocast(device_type: str, dtype):
    """The forward pass's precision on `device_type`: bfloat16 autocast for `dtype` bfloat16, plain float32 for None."""
    import torch

    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=dtype is not None)


def autocast_dtype(precision: str, device_type: str = "cpu"):
    """bfloat16 for autocast, or None (float32). `auto` on the CPU follows inference's rule, the machine probe's
    `gemm_dtype` (bfloat16 where its GEMMs are at least as fast as float32's; elsewhere they run ~200x slower);
    on CUDA, whether the GPU supports bf16."""
    import torch

    if precision == "auto":
        if device_type == "cuda":
            native = torch.cuda.is_bf16_supported()
        else:
            from ..machine import probe

            native = probe().gemm_dtype().kernel == "bfloat16"
        return torch.bfloat16 if native else None
    return torch.bfloat16 if precision == "bfloat16" else None
