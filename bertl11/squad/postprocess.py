"""Start/end logits of each window -> answers, with HF `pipeline("question-answering")` semantics.

Per window: logits of tokens outside the context (the [CLS] token excepted) are set to -10000, each of
start and end goes through a softmax, [CLS]'s start x end probability is the window's null score, and the
n_best spans by start x end probability (start <= end, at most max_answer_len tokens, context tokens only)
become character spans of the context, widened to whole words when align_to_words is set. Across the
question's windows, spans with the same text (ignoring case) add their scores and keep the first offsets.
The question's null score is the smallest window null score; with handle_impossible_answer it competes
as the answer "" and wins only when strictly higher than the best span. A model fine-tuned here ships a
threshold instead (`na_prob_threshold`, as HF run_qa's null_score_diff_threshold): the answer is "" when
na_prob exceeds it. The pipeline's rule is the threshold 0.5.

Probabilities are float32 like the pipeline's numpy arithmetic, so near-ties break the same way.
`na_prob` = null / (null + best span score): above 0.5 exactly when the pipeline would answer "".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UserError

if TYPE_CHECKING:  # preprocess needs torch; the answers here need only its windows' fields
    from .preprocess import Window

MASKED_LOGIT = -10000.0  # what the pipeline writes over tokens that cannot be in an answer
CLS = 0


@dataclass(frozen=True)
class Answer:
    """A question's answer: `context[start:end] == text`; "" (start = end = 0) means "no answer".

    score:        the pipeline's score (summed span probabilities, or the null score for "")
    na_prob:      how likely the question has no answer, from the null score against the best span
    alternatives: the next best answers when asked for top_k > 1, best first
    """

    text: str
    score: float
    start: int
    end: int
    na_prob: float = 0.0
    alternatives: tuple["Answer", ...] = ()

    @property
    def is_impossible(self) -> bool:
        return self.text == ""


@dataclass(frozen=True)
class SpanSearch:
    """How spans are chosen (HF pipeline defaults)."""

    top_k: int = 1
    max_answer_len: int = 15
    handle_impossible_answer: bool = False
    align_to_words: bool = True
    na_prob_threshold: float | None = None  # set: "" exactly when na_prob exceeds it (handle_impossible_answer aside)

    def __post_init__(self):
        if self.na_prob_threshold is not None and not 0 <= self.na_prob_threshold <= 1:
            raise UserError(f"the na_prob threshold must be in [0, 1], not {self.na_prob_threshold}")
        if self.top_k < 1:
            raise UserError(f"top_k must be at least 1, not {self.top_k}")
        if self.max_answer_len < 1:
            raise UserError(f"max_answer_len must be at least 1, not {self.max_answer_len}")

    @property
    def n_best(self) -> int:
        """Spans kept per window: extra ones when aligning to words, because that merges some."""
        return self.top_k * 2 + 10 if self.align_to_words else self.top_k


def _softmax32(logits: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    x = np.where(allowed, logits.astype(np.float32), np.float32(MASKED_LOGIT))
    e = np.exp(x - x.max())
    return e / e.sum()


def window_spans(start_logits: np.ndarray, end_logits: np.ndarray, window: Window, search: SpanSearch):
    """(null score, [(start token, end token, score), ...] best first) for one window's logits."""
    allowed = window.in_context.copy()
    allowed[CLS] = True  # [CLS] takes part in the softmax: its probability is the null score
    start, end = _softmax32(start_logits, allowed), _softmax32(end_logits, allowed)
    null_score = float(start[CLS] * end[CLS])

    n = len(window)
    first = np.arange(n)[:, None]
    last = first + np.arange(search.max_answer_len)[None, :]  # [n, max_answer_len] end token of each span
    valid = last < n
    last = np.minimum(last, n - 1)
    valid &= window.in_context[first] & window.in_context[last]
    candidates = np.flatnonzero(valid)
    scores = (start[:, None] * end[last]).ravel()[candidates]
    if len(candidates) > search.n_best:
        keep = np.argpartition(-scores, search.n_best)[: search.n_best]
        candidates, scores = candidates[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")
    rows, offsets = np.divmod(candidates[order], search.max_answer_len)
    return null_score, [(int(s), int(s + d), float(p)) for s, d, p in zip(rows, offsets, scores[order])]


def _char_span(window: Window, first: int, last: int, align_to_words: bool) -> tuple[int, int]:
    encoding = window.encoding
    if align_to_words:
        first_word, last_word = encoding.token_to_word(first), encoding.token_to_word(last)
        if first_word is not None and last_word is not None:
            return encoding.word_to_chars(first_word, 1)[0], encoding.word_to_chars(last_word, 1)[1]
    return encoding.offsets[first][0], encoding.offsets[last][1]


def question_answer(windows: list[Window], logits: list[tuple[np.ndarray, np.ndarray]], context: str,
                    search: SpanSearch = SpanSearch()) -> Answer:
    """The answer to one question from its windows (in window order) and their (start, end) logits."""
    null_score = float("inf")
    spans: dict[str, list] = {}  # lower-cased text -> [score, start, end, text], in first-seen order
    for window, (start_logits, end_logits) in zip(windows, logits):
        window_null, candidates = window_spans(start_logits, end_logits, window, search)
        null_score = min(null_score, window_null)
        for first, last, score in candidates:
            start, end = _char_span(window, first, last, search.align_to_words)
            text = context[start:end]
            if text.lower() in spans:
                spans[text.lower()][0] += score
            else:
                spans[text.lower()] = [score, start, end, text]
    ranked = [Answer(text, score, start, end) for score, start, end, text in spans.values()]
    best_span = max((a.score for a in ranked), default=0.0)
    na_prob = null_score / (null_score + best_span) if null_score + best_span > 0 else 1.0
    thresholded = search.na_prob_threshold is not None
    if search.handle_impossible_answer and not thresholded:
        ranked.append(Answer("", null_score, 0, 0))
    ranked.sort(key=lambda a: a.score, reverse=True)  # stable: a tie keeps the earlier answer first
    if thresholded and na_prob > search.na_prob_threshold:
        ranked.insert(0, Answer("", null_score, 0, 0))
    top = [Answer(a.text, a.score, a.start, a.end, na_prob) for a in ranked[: search.top_k]]
    if not top:
        return Answer("", null_score, 0, 0, na_prob)
    return Answer(top[0].text, top[0].score, top[0].start, top[0].end, na_prob, tuple(top[1:]))


def postprocess(windows: list[Window], logits: list[tuple[np.ndarray, np.ndarray]], contexts: list[str],
                search: SpanSearch = SpanSearch()) -> list[Answer]:
    """One answer per context, from all windows (as `encode` made them) and their logits (same order)."""
    by_question: list[list[int]] = [[] for _ in contexts]
    for index, window in enumerate(windows):
        by_question[window.question].append(index)
    return [
        question_answer([windows[i] for i in indexes], [logits[i] for i in indexes], context, search)
        for indexes, context in zip(by_question, contexts)
    ]
