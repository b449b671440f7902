"""Questions + contexts -> token windows -> fixed-size batches.

A context too long for one sequence is cut into overlapping windows, the way HF's question-answering
pipeline does it (a fast tokenizer with truncation="only_second" and `stride` = doc_stride tokens of
overlap). Batches always hold exactly `batch_size` rows: the last one is filled with padding rows that
produce no predictions. With bucketing, windows of similar length share a batch that is padded only to
its longest window rounded up to a multiple of 32, instead of to max_seq_len.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UserError, require_at_least

PAD_MULTIPLE = 32


@dataclass(frozen=True)
class WindowConfig:
    """How a question and its context become model sequences (HF pipeline defaults)."""

    max_seq_len: int = 384
    doc_stride: int = 128  # tokens of context shared by neighbouring windows
    max_question_len: int = 64  # longer questions are cut to this many tokens

    def __post_init__(self):
        if self.max_question_len < 1:
            raise UserError(f"max_question_len must be at least 1, not {self.max_question_len}")
        if self.doc_stride < 0:
            raise UserError(f"doc_stride must not be negative, not {self.doc_stride}")
        # [CLS] question [SEP] context [SEP]: each window must still advance past its overlap.
        room = self.max_seq_len - self.max_question_len - 3
        if self.doc_stride >= room:
            raise UserError(
                f"doc_stride {self.doc_stride} leaves no new context per window: it must be below "
                f"max_seq_len - max_question_len - 3 = {room}"
            )


@dataclass
class Window:
    """One model sequence: [CLS] question [SEP] part of the context [SEP], unpadded."""

    question: int  # index into the questions given to `encode`
    input_ids: np.ndarray  # [n] int64
    token_type_ids: np.ndarray  # [n] int64
    in_context: np.ndarray  # [n] bool: the tokens an answer may use
    encoding: object  # tokenizers.Encoding: token -> word -> characters of the context

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class Batch:
    """`batch_size` rows; row i < len(windows) holds window `windows[i]`, the rest is padding."""

    input_ids: torch.Tensor  # [batch_size, seq_len] int64
    token_type_ids: torch.Tensor
    attention_mask: torch.Tensor
    windows: list[int]

    @property
    def seq_len(self) -> int:
        return self.input_ids.shape[1]


def _check_inputs(questions: list[str], contexts: list[str]) -> None:
    if len(questions) != len(contexts):
        raise UserError(f"{len(questions)} questions but {len(contexts)} contexts")
    for what, texts in (("question", questions), ("context", contexts)):
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise UserError(f"{what} {i} is empty or not text")


def _truncate_questions(tokenizer, questions: list[str], max_tokens: int) -> list[str]:
    """Questions cut to their first `max_tokens` tokens (HF's fast pipeline ignores max_question_len)."""
    encoded = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    return [
        question if len(offsets) <= max_tokens else question[: offsets[max_tokens - 1][1]]
        for question, offsets in zip(questions, encoded["offset_mapping"])
    ]


def encode(tokenizer, questions: list[str], contexts: list[str], config: WindowConfig = WindowConfig()) -> list[Window]:
    """All windows of all questions, grouped by question in question order."""
    _check_inputs(questions, contexts)
    if not tokenizer.is_fast or tokenizer.padding_side != "right":
        raise UserError("SQuAD preprocessing needs a fast tokenizer that pads on the right (BERT's)")
    encoded = tokenizer(
        _truncate_questions(tokenizer, questions, config.max_question_len),
        contexts,
        truncation="only_second",
        max_length=config.max_seq_len,
        stride=config.doc_stride,
        return_overflowing_tokens=True,
        return_token_type_ids=True,
        padding=False,
    )
    windows = []
    for encoding, question in zip(encoded.encodings, encoded["overflow_to_sample_mapping"]):
        windows.append(Window(
            question=question,
            input_ids=np.asarray(encoding.ids, dtype=np.int64),
            token_type_ids=np.asarray(encoding.type_ids, dtype=np.int64),
            in_context=np.asarray([s == 1 for s in encoding.sequence_ids], dtype=bool),
            encoding=encoding,
        ))
    return windows


def _batch(windows: list[Window], indexes: list[int], batch_size: int, seq_len: int, pad_id: int) -> Batch:
    input_ids = torch.full((batch_size, seq_len), pad_id, dtype=torch.int64)
    token_type_ids = torch.zeros((batch_size, seq_len), dtype=torch.int64)
    attention_mask = torch.zeros((batch_size, seq_len), dtype=torch.int64)
    for row, index in enumerate(indexes):
        window = windows[index]
        n = len(window)
        input_ids[row, :n] = torch.from_numpy(window.input_ids)
        token_type_ids[row, :n] = torch.from_numpy(window.token_type_ids)
        attention_mask[row, :n] = 1
    return Batch(input_ids, token_type_ids, attention_mask, list(indexes))


def static_batches(windows: list[Window], batch_size: int, seq_len: int = 384, pad_id: int = 0) -> list[Batch]:
    """Windows in order, every batch padded to `seq_len` (what a static-shape device needs)."""
    require_at_least("batch size", batch_size)
    longest = max((len(w) for w in windows), default=0)
    if longest > seq_len:
        raise UserError(f"a window has {longest} tokens, more than the sequence length {seq_len}")
    return [
        _batch(windows, list(range(i, min(i + batch_size, len(windows)))), batch_size, seq_len, pad_id)
        for i in range(0, len(windows), batch_size)
    ]


def bucketed_batches(windows: list[Window], batch_size: int, multiple: int = PAD_MULTIPLE, pad_id: int = 0) -> list[Batch]:
    """Windows sorted longest first, each batch padded to its longest window rounded up to `multiple`."""
    require_at_least("batch size", batch_size)
    if multiple < 1:
        raise UserError(f"the padding multiple must be at least 1, not {multiple}")
    order = sorted(range(len(windows)), key=lambda i: len(windows[i]), reverse=True)
    batches = []
    for i in range(0, len(order), batch_size):
        indexes = order[i:i + batch_size]
        seq_len = -(-len(windows[indexes[0]]) // multiple) * multiple
        batches.append(_batch(windows, indexes, batch_size, seq_len, pad_id))
    return batches


def make_batches(windows: list[Window], batch_size: int, *, bucket: bool, seq_len: int = 384, pad_id: int = 0) -> list[Batch]:
    if bucket:
        return bucketed_batches(windows, batch_size, pad_id=pad_id)
    return static_batches(windows, batch_size, seq_len, pad_id)
