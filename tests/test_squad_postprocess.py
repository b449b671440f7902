"""Span search on hand-made logits: expected answers and scores are worked out in the tests, in float64."""

import numpy as np
import pytest

from bertl11 import resolve_model
from bertl11.errors import UserError
from bertl11.squad import SpanSearch, WindowConfig, encode, postprocess

QUESTION = "What is it?"
CONTEXT = "The huggingface library is the capital of unaffable France."


@pytest.fixture(scope="module")
def tokenizer():
    return resolve_model("tiny").tokenizer


def token_at(window, text, context=CONTEXT, occurrence=0):
    """The window's token holding the first character of the `occurrence`-th `text` in the context."""
    position = -1
    for _ in range(occurrence + 1):
        position = context.index(text, position + 1)
    return window.encoding.char_to_token(position, 1)


def peaked(n, peaks):
    logits = np.zeros(n, dtype=np.float32)
    for index, value in peaks.items():
        logits[index] = value
    return logits


def allowed_softmax(logits, window):
    """Softmax in float64 over [CLS] and the context tokens, the rest excluded."""
    allowed = window.in_context.copy()
    allowed[0] = True
    e = np.where(allowed, np.exp(logits.astype(np.float64)), 0.0)
    return e / e.sum()


def answer_one(window, start, end, context=CONTEXT, **search):
    return postprocess([window], [(start, end)], [context], SpanSearch(**search))[0]


def test_best_span_text_offsets_and_score(tokenizer):
    [window] = encode(tokenizer, [QUESTION], [CONTEXT])
    first, last = token_at(window, "capital"), token_at(window, "France")
    start, end = peaked(len(window), {first: 6.0}), peaked(len(window), {last: 6.0})
    answer = answer_one(window, start, end)
    assert answer.text == "capital of unaffable France"
    assert CONTEXT[answer.start:answer.end] == answer.text
    # No other token span gives the same text, so the score is this one span's start x end probability.
    assert answer.score == pytest.approx(allowed_softmax(start, window)[first] * allowed_softmax(end, window)[last], rel=1e-5)
    assert not answer.is_impossible


@pytest.mark.parametrize("align, text", [(True, "unaffable"), (False, "ffa")])
def test_align_to_words(tokenizer, align, text):
    [window] = encode(tokenizer, [QUESTION], [CONTEXT])
    middle = token_at(window, "ffa")  # "una ##ffa ##ble": a piece from the middle of a word
    logits = peaked(len(window), {middle: 8.0})
    assert answer_one(window, logits, logits, align_to_words=align).text == text


def test_question_tokens_are_never_answers(tokenizer):
    [window] = encode(tokenizer, ["Which huggingface library?"], [CONTEXT])
    question_token = window.encoding.char_to_token(len("Which "), 0)  # "huggingface" in the question
    logits = peaked(len(window), {question_token: 20.0, token_at(window, "France"): 3.0})
    assert answer_one(window, logits, logits).text == "France"


def test_max_answer_len(tokenizer):
    [window] = encode(tokenizer, [QUESTION], [CONTEXT])
    first, last = token_at(window, "huggingface"), token_at(window, "France")
    start, end = peaked(len(window), {first: 8.0}), peaked(len(window), {last: 8.0})
    assert last - first + 1 > 3
    assert answer_one(window, start, end).text == "huggingface library is the capital of unaffable France"
    short = answer_one(window, start, end, max_answer_len=3)
    assert len(tokenizer.tokenize(short.text)) <= 3 + 2  # 3 tokens, widened to whole words at most at both ends


def test_null_score_and_handle_impossible_answer(tokenizer):
    [window] = encode(tokenizer, [QUESTION], [CONTEXT])
    logits = peaked(len(window), {0: 5.0, token_at(window, "France"): 2.0})
    p = allowed_softmax(logits, window)
    null_score = p[0] * p[0]

    impossible = answer_one(window, logits, logits, handle_impossible_answer=True, top_k=2)
    assert impossible.is_impossible and (impossible.start, impossible.end) == (0, 0)
    assert impossible.score == pytest.approx(null_score, rel=1e-5)
    assert impossible.alternatives[0].text == "France"
    assert impossible.na_prob > 0.5

    plain = answer_one(window, logits, logits)
    assert plain.text == "France" and plain.na_prob == pytest.approx(impossible.na_prob)
    assert plain.na_prob == pytest.approx(null_score / (null_score + plain.score), rel=1e-5)


def test_same_text_in_two_windows_adds_scores(tokenizer):
    """The overlap of two windows holds the same word; its probabilities from both windows add up."""
    context = " ".join(f"word{i}" for i in range(300)) + " marker " + " ".join(f"tail{i}" for i in range(40))
    windows = encode(tokenizer, [QUESTION], [context], WindowConfig(max_seq_len=256, doc_stride=128))
    holding = [w for w in windows if w.encoding.char_to_token(context.index("marker"), 1) is not None]
    assert len(holding) == 2
    logits, expected = [], 0.0
    for window in windows:
        token = window.encoding.char_to_token(context.index("marker"), 1)
        peaks = {token: 9.0} if token is not None else {}
        logit = peaked(len(window), peaks)
        logits.append((logit, logit))
        if token is not None:
            expected += allowed_softmax(logit, window)[token] ** 2
    answer = postprocess(windows, logits, [context])[0]
    assert answer.text == "marker" and answer.score == pytest.approx(expected, rel=1e-5)


def test_top_k_answers_are_distinct_and_ranked(tokenizer):
    [window] = encode(tokenizer, [QUESTION], [CONTEXT])
    start = peaked(len(window), {token_at(window, "capital"): 4.0, token_at(window, "France"): 3.0})
    end = peaked(len(window), {token_at(window, "France"): 4.0})
    answer = answer_one(window, start, end, top_k=3)
    ranked = [answer, *answer.alternatives]
    assert len(ranked) == 3 and len({a.text.lower() for a in ranked}) == 3
    assert [a.score for a in ranked] == sorted((a.score for a in ranked), reverse=True)
    assert [a.text for a in ranked[:2]] == ["capital of unaffable France", "France"]


@pytest.mark.parametrize("options", [{"top_k": 0}, {"max_answer_len": 0}])
def test_bad_search_options(options):
    with pytest.raises(UserError):
        SpanSearch(**options)


def test_a_shipped_threshold_answers_no_answer_exactly_above_it(tokenizer):
    """na_prob above the threshold gives ""; at or below it the best span. 0.5 reproduces the pipeline's rule."""
    [window] = encode(tokenizer, [QUESTION], [CONTEXT])
    first = token_at(window, "capital")
    rng = np.random.default_rng(5)
    for _ in range(200):
        start, end = peaked(len(window), {0: rng.uniform(0, 6), first: rng.uniform(0, 6)}), peaked(len(window), {0: rng.uniform(0, 6), first: rng.uniform(0, 6)})
        start += rng.normal(0, 0.5, len(window)).astype(np.float32)
        threshold = float(rng.uniform(0.05, 0.95))
        free = answer_one(window, start, end)
        thresholded = answer_one(window, start, end, na_prob_threshold=threshold)
        assert thresholded.na_prob == free.na_prob
        assert thresholded.text == ("" if free.na_prob > threshold else free.text)
        pipeline = answer_one(window, start, end, handle_impossible_answer=True)
        if abs(free.na_prob - 0.5) > 1e-6:  # away from an exact tie of null and best span
            assert answer_one(window, start, end, na_prob_threshold=0.5).text == pipeline.text


def test_a_threshold_outside_zero_one_is_refused():
    with pytest.raises(UserError, match="threshold"):
        SpanSearch(na_prob_threshold=1.5)
