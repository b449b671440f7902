"""Training data: the questions to learn from, cut into the windows the model answers from, labelled and batched.

- Windows come from `bertl11.squad`'s own windowing (the pipeline's 384 tokens / stride 128 by default),
  so the model trains on exactly the sequences it later answers from.
- An unanswerable question labels every window [CLS] (start = end = 0). A window of an answerable
  question that does not contain the answer is dropped: labelling it [CLS] teaches the model to say
  "no answer" to answerable questions, which a small model trained on little data overdoes.
  With `all_answers`, each distinct annotator span of a question is a target (dev questions list up to five).
- Batches are length-bucketed (windows sorted by length within seeded shuffled pools, then the batches
  shuffled), so little compute goes to padding; everything is seeded.
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import UserError
from .recipe import Recipe

POOL_BATCHES = 50  # batches' worth of shuffled windows sorted by length together
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def answer_tokens(window, answer_start: int, answer_text: str) -> tuple[int, int] | None:
    """The (first, last) context tokens of the answer's characters in this window, or None if it is not inside."""
    answer_end = answer_start + len(answer_text)
    offsets = window.encoding.offsets
    context = np.flatnonzero(window.in_context)
    if not len(context) or offsets[context[0]][0] > answer_start or offsets[context[-1]][1] < answer_end:
        return None
    first = next(t for t in context if offsets[t][1] > answer_start)
    last = next(t for t in reversed(context) if offsets[t][0] < answer_end)
    return (int(first), int(last)) if first <= last else None


def gold_spans(gold: dict, all_answers: bool) -> list[tuple[int, str]]:
    """The (answer_start, text) targets of one question: the first answer, or each distinct one in order."""
    spans = list(zip(gold["answer_start"], gold["text"]))
    return list(dict.fromkeys(spans)) if all_answers else spans[:1]


def without_answer_sentences(context: str, gold: dict) -> str | None:
    """The context without every sentence that overlaps a gold answer, or None when nothing is left or a gold
    text still appears in what is left (then the question might still be answerable)."""
    answers = [(start, start + len(text)) for start, text in zip(gold["answer_start"], gold["text"])]
    kept, position = [], 0
    for sentence in SENTENCE_END.split(context):
        start = context.index(sentence, position)
        position = start + len(sentence)
        if not any(start < answer_end and answer_start < position for answer_start, answer_end in answers):
            kept.append(sentence)
    remainder = " ".join(kept)
    if not remainder or any(text.lower() in remainder.lower() for text in gold["text"]):
        return None
    return remainder


def training_windows(tokenizer, dataset, recipe: Recipe):
    """(windows, labels [(start, end)]) of every question: [CLS] for unanswerable, answer-missing windows dropped.
    With `recipe.all_answers` a window holding several distinct gold spans appears once per span; with
    `recipe.deletion_negatives` each answerable question also appears with its answer's sentences deleted, as [CLS]."""
    from ..squad.preprocess import WindowConfig, encode

    config = WindowConfig(recipe.max_seq_len, recipe.doc_stride)
    questions, contexts, answers = list(dataset["question"]), list(dataset["context"]), dataset["answers"]
    windows = encode(tokenizer, questions, contexts, config)
    kept, labels = [], []
    for window in windows:
        gold = answers[window.question]
        if not gold["text"]:
            kept.append(window)
            labels.append((0, 0))
            continue
        for answer_start, answer_text in gold_spans(gold, recipe.all_answers):
            span = answer_tokens(window, answer_start, answer_text)
            if span is not None:
                kept.append(window)
                labels.append(span)
    if not kept:
        raise UserError("no training window holds a labelled answer: is the data SQuAD v2?")
    if recipe.deletion_negatives:
        negatives = [(question, remainder) for question, context, gold in zip(questions, contexts, answers)
                     if gold["text"] and (remainder := without_answer_sentences(context, gold)) is not None]
        if negatives:
            extra = encode(tokenizer, [q for q, _ in negatives], [c for _, c in negatives], config)
            kept += extra
            labels += [(0, 0)] * len(extra)
    return kept, labels


def epoch_batches(windows, labels, batch_size: int, rng: np.random.Generator):
    """Seeded, length-bucketed training batches: (input_ids, token_type_ids, attention_mask, starts, ends)."""
    import torch

    from ..squad.preprocess import bucketed_batches

    order = rng.permutation(len(windows))
    pool = batch_size * POOL_BATCHES
    batches = []
    for first in range(0, len(order), pool):
        chosen = order[first:first + pool]
        for batch in bucketed_batches([windows[i] for i in chosen], batch_size):
            rows = len(batch.windows)  # drop the padding rows that fill the last batch
            spans = torch.tensor([labels[chosen[i]] for i in batch.windows])
            batches.append((batch.input_ids[:rows], batch.token_type_ids[:rows], batch.attention_mask[:rows],
                            spans[:, 0], spans[:, 1]))
    return [batches[i] for i in rng.permutation(len(batches))]


def load_training_data(data: str):
    """The questions to train from: a SQuAD-format file or, with 'hub', rajpurkar/squad_v2 train."""
    from .. import hub
    from ..squad.data import HUB_DATASET, read_hub, read_squad_file

    if data == "hub":
        if not hub.reachable(HUB_DATASET, "dataset"):
            raise UserError(f"--data hub: {HUB_DATASET} cannot be reached; pass a SQuAD-format JSON file")
        return read_hub("train")
    return read_squad_file(data)
