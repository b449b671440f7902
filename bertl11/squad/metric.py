"""The SQuAD v2 score, with the semantics of the official evaluation script (evaluate-v2.0.py).

    normalise:  lower-case, drop string.punctuation, drop the words a/an/the, collapse whitespace
    gold:       the question's answers that normalise to something non-empty, or [""] when none do
    EM, F1:     the best over the gold answers; F1 counts shared tokens (both empty: 1, one empty: 0)
    HasAns:     the question has any answer in the data (bool of the raw answer list)
    threshold:  a question whose na_prob exceeds --na-prob-thresh counts as predicted "no answer"
    best_*:     sweep the questions in order of na_prob, answering one more each step, and keep the
                highest running score and the na_prob where it was reached

Like the official script, ids without a prediction are reported and left out of every total; unlike it,
the HasAns/NoAns splits then also leave them out instead of failing with a KeyError. `bertl11 score` prints
`evaluate`'s result as one JSON object with the official key names.
"""

from __future__ import annotations

import collections
import re
import string
import sys
from collections.abc import Mapping

from ..errors import UserError

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
MISSING_SHOWN = 20


def normalize_answer(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(gold: str, prediction: str) -> int:
    return int(normalize_answer(gold) == normalize_answer(prediction))


def f1_score(gold: str, prediction: str) -> float:
    gold_tokens = normalize_answer(gold).split()
    predicted_tokens = normalize_answer(prediction).split()
    if not gold_tokens or not predicted_tokens:
        return float(gold_tokens == predicted_tokens)
    shared = sum((collections.Counter(gold_tokens) & collections.Counter(predicted_tokens)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(predicted_tokens), shared / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def gold_answers(answers: list[str]) -> list[str]:
    """The answers scored against: the non-empty ones, or [""] for an unanswerable question."""
    return [a for a in answers if normalize_answer(a)] or [""]


def _percent_of(scores: Mapping[str, float], ids: list[str]) -> float:
    return 100.0 * sum(scores[i] for i in ids) / len(ids)


def _best_threshold(scores: Mapping[str, float], predictions: Mapping[str, str], na_probs: Mapping[str, float],
                    has_answer: Mapping[str, bool]) -> tuple[float, float]:
    """(best score in %, its na_prob threshold): start from all "no answer" and answer questions in na_prob order."""
    running = best = sum(1 for q in scores if not has_answer[q])
    threshold = 0.0
    # Sorting is stable and na_probs keeps its file order, so ties are walked the way the official script walks them.
    for qid in sorted((q for q in na_probs if q in scores), key=lambda q: na_probs[q]):
        if has_answer[qid]:
            running += scores[qid]
        elif predictions[qid]:
            running -= 1
        if running > best:
            best, threshold = running, na_probs[qid]
    return 100.0 * best / len(scores), threshold


def evaluate(answers: Mapping[str, list[str]], predictions: Mapping[str, str],
             na_probs: Mapping[str, float] | None = None, na_prob_thresh: float = 1.0) -> dict:
    """The official result dict for `answers` (id -> the data's answer texts, [] when unanswerable).

    Ids of `answers` missing from `predictions` are left out (see `missing_predictions`).
    """
    scored = [qid for qid in answers if qid in predictions]
    if not scored:
        raise UserError("no prediction matches a question id of the data")
    if na_probs is not None:
        lacking = [qid for qid in scored if qid not in na_probs]
        if lacking:
            raise UserError(f"the na-probs lack {len(lacking)} predicted ids, e.g. {lacking[0]!r}")
    has_answer = {qid: bool(answers[qid]) for qid in scored}
    exact_raw, f1_raw = raw_scores(answers, predictions, scored)

    def thresholded(raw):
        if na_probs is None:
            return raw
        return {qid: float(not has_answer[qid]) if na_probs[qid] > na_prob_thresh else s for qid, s in raw.items()}

    exact, f1 = thresholded(exact_raw), thresholded(f1_raw)
    result = {"exact": _percent_of(exact, scored), "f1": _percent_of(f1, scored), "total": len(scored)}
    for prefix, ids in (("HasAns", [q for q in scored if has_answer[q]]), ("NoAns", [q for q in scored if not has_answer[q]])):
        if ids:
            result.update({f"{prefix}_exact": _percent_of(exact, ids), f"{prefix}_f1": _percent_of(f1, ids),
                           f"{prefix}_total": len(ids)})
    if na_probs is not None:
        result["best_exact"], result["best_exact_thresh"] = _best_threshold(exact_raw, predictions, na_probs, has_answer)
        result["best_f1"], result["best_f1_thresh"] = _best_threshold(f1_raw, predictions, na_probs, has_answer)
    return result


def raw_scores(answers: Mapping[str, list[str]], predictions: Mapping[str, str],
               ids: list[str]) -> tuple[dict[str, int], dict[str, float]]:
    """Per question: exact match and F1 of its prediction against the best of its gold answers."""
    exact, f1 = {}, {}
    for qid in ids:
        golds = gold_answers(answers[qid])
        exact[qid] = max(exact_match(g, predictions[qid]) for g in golds)
        f1[qid] = max(f1_score(g, predictions[qid]) for g in golds)
    return exact, f1


def threshold_curve(answers: Mapping[str, list[str]], predictions: Mapping[str, str],
                    na_probs: Mapping[str, float]) -> list[tuple[float, float, float]]:
    """(threshold, EM %, F1 %) at each na_prob threshold, as `evaluate(..., na_prob_thresh=threshold)` scores.

    A question whose na_prob is above the threshold counts as answered "no answer"; walking the questions in
    na_prob order updates the totals one question at a time, so the whole curve costs one scoring pass.
    """
    ids = sorted((q for q in answers if q in predictions), key=lambda q: na_probs[q])
    exact_raw, f1_raw = raw_scores(answers, predictions, ids)
    no_answer = {q: float(not answers[q]) for q in ids}
    exact, f1 = sum(no_answer.values()), sum(no_answer.values())  # threshold below every na_prob
    curve = [(0.0, 100.0 * exact / len(ids), 100.0 * f1 / len(ids))] if ids and na_probs[ids[0]] > 0 else []
    for i, qid in enumerate(ids):
        exact += exact_raw[qid] - no_answer[qid]
        f1 += f1_raw[qid] - no_answer[qid]
        if i + 1 == len(ids) or na_probs[ids[i + 1]] != na_probs[qid]:  # a threshold passes all equal na_probs at once
            curve.append((na_probs[qid], 100.0 * exact / len(ids), 100.0 * f1 / len(ids)))
    return curve


def missing_predictions(answers: Mapping[str, list[str]], predictions: Mapping[str, str]) -> list[str]:
    return [qid for qid in answers if qid not in predictions]


def report_missing(missing: list[str], stream=None) -> None:
    """Say which ids lack a prediction, as the official script does (the first few, then a count), on stderr."""
    stream = stream or sys.stderr
    for qid in missing[:MISSING_SHOWN]:
        print(f"Missing prediction for {qid}", file=stream)
    if len(missing) > MISSING_SHOWN:
        print(f"... {len(missing) - MISSING_SHOWN} more ids lack a prediction ({len(missing)} in all)", file=stream)
