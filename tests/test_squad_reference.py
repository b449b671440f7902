"""bertl11.squad.answer against HF pipeline("question-answering") (transformers 4.57) on identical weights.

The model is saved with save_pretrained to a temporary directory; bertl11 loads it from there (FLOAT32) and the
reference environment's pipeline loads the same files. The questions are SQuAD v2 dev questions, a third of
them with contexts longer than one 384-token window.
"""

import collections
import contextlib
import json
import subprocess

import pytest
import torch

from bertl11 import QAModel, resolve_model
from bertl11.squad import SpanSearch, WindowConfig, encode, load_squad, make_batches, postprocess, run_model
from conftest import REPO, SQUAD_DEV

REFERENCE_PYTHON = REPO / ".venv-ref" / "bin" / "python"
REFERENCE_SCRIPT = REPO / "tests" / "reference" / "qa_pipeline.py"
LONG_QUESTIONS, OTHER_QUESTIONS = 100, 200
REQUIRED_AGREEMENT = 0.995
CALIBRATION_STEP = 10  # questions used to tilt the head: every tenth
RUNS = [
    {"top_k": 1, "handle_impossible_answer": False},
    {"top_k": 1, "handle_impossible_answer": True},
    {"top_k": 3, "handle_impossible_answer": True},
]

pytestmark = [
    pytest.mark.reference,
    pytest.mark.skipif(not REFERENCE_PYTHON.exists(), reason="the reference environment .venv-ref is not built (make test builds it)"),
]


def dev_questions(tokenizer):
    """LONG_QUESTIONS questions whose context needs several windows, and OTHER_QUESTIONS spread over the dev set."""
    data = load_squad(str(SQUAD_DEV))
    questions, contexts = list(data["question"]), list(data["context"])
    unique_contexts = list(dict.fromkeys(contexts))
    context_tokens = dict(zip(unique_contexts, map(len, tokenizer(unique_contexts, add_special_tokens=False)["input_ids"])))
    question_tokens = map(len, tokenizer(questions, add_special_tokens=False)["input_ids"])
    windows = WindowConfig()
    is_long = [q + context_tokens[c] + 3 > windows.max_seq_len for q, c in zip(question_tokens, contexts)]
    long = [i for i, flag in enumerate(is_long) if flag][:LONG_QUESTIONS]
    short = [i for i, flag in enumerate(is_long) if not flag]
    chosen = long + short[:: len(short) // OTHER_QUESTIONS][:OTHER_QUESTIONS]
    return [questions[i] for i in chosen], [contexts[i] for i in chosen]


@torch.no_grad()
def tilt_towards_no_answer(hf_model, tokenizer, questions, contexts):
    """Move the QA head's logits at [CLS] up relative to context tokens, so that "no answer" wins about half the time.

    A seeded random QA head almost never prefers [CLS], which would leave handle_impossible_answer untested. Adding
    shift * u / |u|^2 to both head rows, with u = mean [CLS] hidden state - mean context hidden state, raises [CLS]
    logits by about `shift` against the context's; `shift` is half the median start+end logit gap between the best
    context token and [CLS]. Both sides then load the tilted weights.
    """
    batch = tokenizer(questions, contexts, truncation="only_second", max_length=384, padding=True, return_tensors="pt")
    hidden = hf_model.bert(**batch).last_hidden_state
    logits = hf_model.qa_outputs(hidden)
    context = (batch["token_type_ids"] == 1) & (batch["attention_mask"] == 1)
    best_in_context = logits.masked_fill(~context[..., None], float("-inf")).amax(dim=1)
    shift = -(logits[:, 0] - best_in_context).sum(dim=-1).median() / 2
    u = hidden[:, 0].mean(dim=0) - hidden[context].mean(dim=0)
    hf_model.qa_outputs.weight += shift * u / u.dot(u)


@contextlib.contextmanager
def one_thread():
    """Both sides run single-threaded: test workers share two cores, and oversubscribed torch ops run ~10x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run_both(model_name, model_dir):
    """(ours, theirs): per run, per question, the answers best first as (text, start, end, score)."""
    source = resolve_model(model_name)
    questions, contexts = dev_questions(source.tokenizer)
    hf_model = source.hf_model()
    with one_thread():
        tilt_towards_no_answer(hf_model, source.tokenizer, questions[::CALIBRATION_STEP], contexts[::CALIBRATION_STEP])
    hf_model.save_pretrained(model_dir)
    source.tokenizer.save_pretrained(model_dir)

    request_file, answers_file = model_dir / "request.json", model_dir / "answers.json"
    request_file.write_text(json.dumps({"questions": questions, "contexts": contexts, "runs": RUNS}))
    subprocess.run([str(REFERENCE_PYTHON), str(REFERENCE_SCRIPT), str(model_dir), str(request_file), str(answers_file)],
                   check=True, env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PATH": "/usr/bin:/bin"})
    theirs = [[[(a["answer"], a["start"], a["end"], a["score"]) for a in q] for q in run]
              for run in json.loads(answers_file.read_text())["runs"]]

    # Like the reference, run the model once and postprocess its logits once per option set. The torch backend's
    # fast path (checked against HF in tests/test_perf.py) takes a fraction of the per-op simulation's time.
    model = QAModel.load(str(model_dir), config="FLOAT32", device="cpu", fast=True)
    windows = encode(model.tokenizer, questions, contexts)
    with one_thread():
        logits = run_model(model, make_batches(windows, 8, bucket=True))
    ours = []
    for run in RUNS:
        best = postprocess(windows, logits, contexts, SpanSearch(**run))
        ours.append([[(a.text, a.start, a.end, a.score) for a in (b, *b.alternatives)] for b in best])
    windows_per_question = collections.Counter(w.question for w in windows)
    assert sum(n > 1 for n in windows_per_question.values()) == LONG_QUESTIONS
    return ours, theirs


def spans(answers):
    return [(text, start, end) for text, start, end, _ in answers]


def agreement(ours, theirs):
    """The fraction of questions with the same answers, and the first few that differ."""
    agree = [spans(a) == spans(b) for a, b in zip(ours, theirs)]
    differing = [(spans(a), spans(b)) for a, b, same in zip(ours, theirs, agree) if not same]
    return sum(agree) / len(agree), differing[:3]


# One test per model runs every option set, so a worker never repeats the reference pipeline for another test.
@pytest.mark.parametrize("model_name", ["tiny", pytest.param("minilm", marks=pytest.mark.slow)])
def test_answers_match_pipeline(model_name, tmp_path, record_property):
    ours, theirs = run_both(model_name, tmp_path)
    for run, options in enumerate(RUNS):
        assert len(ours[run]) == len(theirs[run]) == LONG_QUESTIONS + OTHER_QUESTIONS
        fraction, differing = agreement(ours[run], theirs[run])
        record_property(f"agreement_{run}", fraction)
        assert fraction >= REQUIRED_AGREEMENT, (options, fraction, differing)
        for a, b in zip(ours[run], theirs[run]):
            if spans(a) == spans(b):  # float32 logits from two implementations: scores agree to well under 0.1%
                assert [s for *_, s in a] == pytest.approx([s for *_, s in b], rel=1e-3, abs=1e-12), options
    # handle_impossible_answer must have produced both outcomes often, or it would not have tested the null score
    empty = sum(q[0][0] == "" for q in theirs[1]) / len(theirs[1])
    record_property("no_answer_fraction", empty)
    assert 0.1 < empty < 0.9
