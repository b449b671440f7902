"""Windows over long contexts, fixed-size batches whose padding never answers, and length bucketing."""

import pytest
import torch

from bertl11 import QAModel, resolve_model
from bertl11.errors import UserError
from bertl11.squad import (WindowConfig, answer, bucketed_batches, encode, load_squad, make_batches, postprocess,
                           run_model, static_batches)
from conftest import SQUAD_DEV


@pytest.fixture(scope="module")
def tokenizer():
    return resolve_model("tiny").tokenizer


@pytest.fixture(scope="module")
def dev():
    data = load_squad(str(SQUAD_DEV), limit=400)
    return list(data["question"]), list(data["context"])


def test_long_context_windows_cover_it_with_stride_overlap(tokenizer):
    context = " ".join(f"w{i}x" for i in range(700))
    config = WindowConfig()
    windows = encode(tokenizer, ["Which one?"], [context], config)
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    pieces = [w.input_ids[w.in_context].tolist() for w in windows]
    assert len(windows) > 2 and all(len(w) <= config.max_seq_len for w in windows)
    assert all(w.input_ids[0] == tokenizer.cls_token_id and w.question == 0 for w in windows)
    rebuilt = pieces[0]
    for previous, piece in zip(pieces, pieces[1:]):
        assert piece[: config.doc_stride] == previous[-config.doc_stride:]  # neighbours share doc_stride tokens
        rebuilt += piece[config.doc_stride:]
    assert rebuilt == context_ids


def test_long_questions_are_cut_to_max_question_len(tokenizer):
    question = " ".join(["why"] * 100) + "?"
    [window] = encode(tokenizer, [question], ["A short context."], WindowConfig(max_question_len=64))
    assert (window.token_type_ids == 0).sum() == 64 + 2  # [CLS] + 64 question tokens + [SEP]


@pytest.mark.parametrize("options", [{"doc_stride": 320}, {"max_question_len": 0}, {"doc_stride": -1}])
def test_bad_window_config(options):
    with pytest.raises(UserError):
        WindowConfig(**options)


def test_empty_inputs_are_user_errors(tokenizer):
    with pytest.raises(UserError, match="question 1"):
        encode(tokenizer, ["ok?", " "], ["c", "c"])
    with pytest.raises(UserError, match="2 questions but 1 contexts"):
        encode(tokenizer, ["a?", "b?"], ["c"])


def check_covering(batches, windows, batch_size):
    rows = [i for b in batches for i in b.windows]
    assert sorted(rows) == list(range(len(windows)))  # every window exactly once
    for batch in batches:
        assert batch.input_ids.shape[0] == batch_size  # exactly BATCH rows, the last padded
        assert batch.attention_mask[len(batch.windows):].sum() == 0
        for row, index in enumerate(batch.windows):
            n = len(windows[index])
            assert batch.attention_mask[row].sum() == n
            assert batch.input_ids[row, :n].tolist() == windows[index].input_ids.tolist()


def test_static_batches(tokenizer, dev):
    windows = encode(tokenizer, *dev)
    batches = static_batches(windows, 7)
    check_covering(batches, windows, 7)
    assert {b.seq_len for b in batches} == {384}
    assert [i for b in batches for i in b.windows] == list(range(len(windows)))  # data order kept


def test_bucketed_batches_pad_to_multiples_of_32(tokenizer, dev):
    windows = encode(tokenizer, *dev)
    batches = bucketed_batches(windows, 7)
    check_covering(batches, windows, 7)
    for batch in batches:
        longest = max(len(windows[i]) for i in batch.windows)
        assert batch.seq_len % 32 == 0 and longest <= batch.seq_len < longest + 32
    static_tokens = sum(b.input_ids.numel() for b in static_batches(windows, 7))
    assert sum(b.input_ids.numel() for b in batches) < 0.7 * static_tokens


def test_padding_rows_and_bucketing_never_change_answers(dev):
    """Static 384 batches of 8 and bucketed batches of 5 give the answers of one question per batch."""
    model = QAModel.load("tiny", "FLOAT32")
    questions, contexts = dev[0][:16], dev[1][:16]
    windows = encode(model.tokenizer, questions, contexts)
    alone = postprocess(windows, [run_model(model, static_batches([w], 1, seq_len=len(w)))[0] for w in windows], contexts)
    for batches in (make_batches(windows, 8, bucket=False), make_batches(windows, 5, bucket=True)):
        answers = postprocess(windows, run_model(model, batches), contexts)
        assert [(a.text, a.start) for a in answers] == [(a.text, a.start) for a in alone]
        assert [a.score for a in answers] == pytest.approx([a.score for a in alone], rel=1e-4)


def test_answer_returns_one_answer_per_question(dev):
    model = QAModel.load("tiny", "FLOAT32")
    answers = answer(model, dev[0][:3], dev[1][:3], batch_size=8, top_k=2)
    assert len(answers) == 3
    for a, context in zip(answers, dev[1][:3]):
        assert context[a.start:a.end] == a.text and len(a.alternatives) == 1 and 0 <= a.na_prob <= 1


def test_batch_size_must_be_positive(tokenizer):
    windows = encode(tokenizer, ["q?"], ["c"])
    for make in (static_batches, bucketed_batches):
        with pytest.raises(UserError):
            make(windows, 0)
    assert torch.equal(static_batches(windows, 2)[0].attention_mask[1], torch.zeros(384, dtype=torch.int64))
