"""`bertl11 finetune`: labels from our windows, the fixed split, a short real run, and its output loading."""

import json
import re
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from bertl11.modelcard import FILE as MODEL_CARD
from bertl11.packaged import demo_input
from bertl11.sources import resolve_model
from bertl11.squad.data import load_squad
from bertl11.squad.metric import normalize_answer
from bertl11.squad.split import HELD_OUT_ARTICLES, train_validation
from bertl11.training.data import answer_tokens, training_windows, without_answer_sentences
from bertl11.training.recipe import Recipe
from conftest import REPO, SQUAD_DEV, assert_user_error, run_cli, run_main


def bertl11(*args):
    return run_cli(*args, timeout=900)


@pytest.fixture(scope="module")
def dev():
    return load_squad(str(SQUAD_DEV))


def test_held_out_articles_are_never_trained_or_validated_on(dev):
    """The 12 articles of the demo input are exactly the held-out ones, and finetune's split skips them."""
    demo_contexts = {item["context"] for item in demo_input()}
    demo_titles = {title for title, context in zip(dev["title"], dev["context"]) if context in demo_contexts}
    assert demo_titles == set(HELD_OUT_ARTICLES)
    train, validation = train_validation(dev, validation_articles=2)
    seen = set(train["title"]) | set(validation["title"])
    assert not seen & set(HELD_OUT_ARTICLES)
    assert len(set(validation["title"])) == 2 and not set(validation["title"]) & set(train["title"])
    assert len(train) + len(validation) + sum(t in HELD_OUT_ARTICLES for t in dev["title"]) == len(dev)


def test_answer_labels_cover_the_gold_answer_text(dev):
    """Each labelled span's characters are the annotated answer; unanswerable questions point at [CLS]."""
    subset = dev.select(range(300))
    tokenizer = resolve_model("tiny").tokenizer
    windows, labels = training_windows(tokenizer, subset, Recipe(max_seq_len=128, doc_stride=48))
    answerable = 0
    for window, (first, last) in zip(windows, labels):
        gold = subset[window.question]["answers"]
        if not gold["text"]:
            assert (first, last) == (0, 0)
            continue
        answerable += 1
        assert window.in_context[first] and window.in_context[last] and first <= last
        context = subset[window.question]["context"]
        start, end = window.encoding.offsets[first][0], window.encoding.offsets[last][1]
        assert normalize_answer(context[start:end]) == normalize_answer(gold["text"][0])
    assert answerable > 100


def test_all_answers_targets_each_distinct_gold_span_once(dev):
    """With --all-answers a window gets one label per distinct annotated span inside it, each one's own text."""
    subset = dev.filter(lambda r: len(set(zip(r["answers"]["answer_start"], r["answers"]["text"]))) >= 3).select(range(40))
    tokenizer = resolve_model("tiny").tokenizer
    recipe = Recipe(max_seq_len=384, doc_stride=128, all_answers=True)
    windows, labels = training_windows(tokenizer, subset, recipe)
    first_only, _ = training_windows(tokenizer, subset, Recipe(max_seq_len=384, doc_stride=128))
    assert len(windows) > len(first_only)
    for q in range(len(subset)):
        gold = subset[q]["answers"]
        context = subset[q]["context"]
        texts = sorted(normalize_answer(context[windows[i].encoding.offsets[first][0]:windows[i].encoding.offsets[last][1]])
                       for i, (first, last) in enumerate(labels) if windows[i].question == q)
        distinct = dict.fromkeys(zip(gold["answer_start"], gold["text"]))
        assert texts == sorted(normalize_answer(text) for _, text in distinct)


def test_deletion_negatives_remove_each_sentence_holding_an_answer():
    context = "Ada wrote the notes. The engine was never built! Babbage designed it in 1837. It used punched cards."
    gold = {"text": ["never built", "Babbage"], "answer_start": [context.index("never built"), context.index("Babbage")]}
    assert without_answer_sentences(context, gold) == "Ada wrote the notes. It used punched cards."
    everywhere = {"text": ["cards"], "answer_start": [context.index("cards")]}
    assert without_answer_sentences("Cards. " + context, everywhere) is None  # the answer text survives elsewhere


def test_deletion_negatives_add_unanswerable_windows_without_the_answer(dev):
    """Each answerable question may come back once more as [CLS], on a shorter context holding none of its gold texts."""
    subset = dev.select(range(200))
    tokenizer = resolve_model("tiny").tokenizer
    recipe = Recipe(max_seq_len=384, doc_stride=128)
    plain, plain_labels = training_windows(tokenizer, subset, recipe)
    windows, labels = training_windows(tokenizer, subset, replace(recipe, deletion_negatives=True))
    assert labels[:len(plain)] == plain_labels
    answerable = [q for q in range(len(subset)) if subset[q]["answers"]["text"]]
    sources = [q for q in answerable if without_answer_sentences(subset[q]["context"], subset[q]["answers"]) is not None]
    added = windows[len(plain):]
    assert len(sources) > 0.5 * len(answerable) and {w.question for w in added} == set(range(len(sources)))
    assert set(labels[len(plain):]) == {(0, 0)}
    for window in added:
        text = normalize_answer(tokenizer.decode(window.input_ids[window.in_context]))
        gold = subset[sources[window.question]]["answers"]["text"]
        assert not any(normalize_answer(answer) in text for answer in gold), (text, gold)


def test_windows_missing_the_answer_are_dropped(dev):
    long_context = dev.filter(lambda r: len(r["context"]) > 3000 and r["answers"]["text"]).select(range(3))
    tokenizer = resolve_model("tiny").tokenizer
    recipe = Recipe(max_seq_len=128, doc_stride=32)
    windows, _ = training_windows(tokenizer, long_context, recipe)
    per_question = [sum(w.question == q for w in windows) for q in range(3)]
    assert all(count >= 1 for count in per_question)
    for window in windows:
        answer = long_context[window.question]["answers"]
        assert answer_tokens(window, answer["answer_start"][0], answer["text"][0]) is not None


NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module", params=["cpu", pytest.param("cuda", marks=NO_CUDA)])
def tiny_run(request, tmp_path_factory, small_squad):
    """The command's one run in a new process, as a user starts it (the other tests call `cli.main` in process)."""
    out = tmp_path_factory.mktemp("finetune") / "tiny-squad2"
    result = bertl11("finetune", "--base", "tiny", "--data", str(small_squad), "--out", str(out), "--epochs", "3",
                     "--batch-size", "8", "--lr", "1e-3", "--max-seq-len", "128", "--doc-stride", "48",
                     "--validation-articles", "1", "--precision", "float32", "--device", request.param)
    assert result.returncode == 0, result.stderr
    return out, result


def test_finetune_loss_falls_and_writes_a_standard_hf_directory(tiny_run, request):
    out, result = tiny_run
    card = json.loads((out / MODEL_CARD).read_text())
    assert card["log"]["device"].split()[0] == request.node.callspec.params["tiny_run"]
    losses = [epoch["mean_loss"] for epoch in card["log"]["epochs"]]
    assert len(losses) == 3 and losses[-1] < 0.9 * losses[0], losses
    assert 0 <= card["na_prob_threshold"] <= 1
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= {p.name for p in out.iterdir()}
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")], "the staging directory was left behind"


def test_finetuned_directory_loads_in_hf_and_as_model_dir(tiny_run, capsys):
    """HF's from_pretrained and `--model DIR` read the same weights: their logits agree in float32."""
    from transformers import AutoTokenizer, BertForQuestionAnswering

    from bertl11 import QAModel

    out, _ = tiny_run
    hf = BertForQuestionAnswering.from_pretrained(str(out)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    batch = tokenizer(["Who wrote it?"], ["Victor Hugo wrote it in exile."], return_tensors="pt")
    model = QAModel.load(str(out), config="FLOAT32")
    assert model.source.na_prob_threshold == json.loads((out / MODEL_CARD).read_text())["na_prob_threshold"]
    start, end = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    with torch.no_grad():
        reference = hf(**batch)
    assert torch.allclose(start, reference.start_logits, atol=1e-5)
    assert torch.allclose(end, reference.end_logits, atol=1e-5)
    squad = run_main(capsys, "squad", "--model", out, "--config", "FLOAT32", "--data", SQUAD_DEV, "--split", "held-out",
                     "--limit", "20", "--out", out.parent / "squad")
    assert squad.returncode == 0, squad.stderr


@pytest.mark.parametrize("args, words", [
    (["--epochs", "0"], ["--epochs"]),
    (["--batch", "0"], ["--batch"]),
    (["--validation-articles", "99"], ["--validation-articles"]),
    (["--base", "no-such-model"], ["unknown model"]),
    (["--data", "/no/such/file.json"], ["does not exist"]),
])
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, args, words):
    base = {"--base": "tiny", "--data": str(SQUAD_DEV), "--out": str(tmp_path / "out")}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    result = run_main(capsys, "finetune", *[x for pair in base.items() for x in pair])
    assert_user_error(result, *words)
    assert not (tmp_path / "out").exists()


def test_finetune_benchmark_times_the_training_loop(small_squad):
    """benchmarks/finetune_benchmark.py runs training.loop.train for exactly --steps steps and projects an epoch."""
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "finetune_benchmark.py"), "--base", "tiny",
                             "--steps", "2", "--data", str(small_squad)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^2 steps in [\d.]+ s: [\d.]+ s/step", result.stdout, re.M), result.stdout
    assert re.search(r"^SQuAD v2 train, estimated: 130,319 questions x [\d.]+ windows = [\d,]+ steps", result.stdout, re.M)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_without_a_gpu_is_a_one_line_error(tmp_path, capsys):
    result = run_main(capsys, "finetune", "--base", "tiny", "--data", SQUAD_DEV, "--out", tmp_path / "out", "--device", "cuda")
    assert_user_error(result, "--device cuda", "no CUDA device")
    assert not (tmp_path / "out").exists()


def test_an_existing_output_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run_main(capsys, "finetune", "--base", "tiny", "--data", SQUAD_DEV, "--out", out)
    assert_user_error(result, "already exists")
    assert (out / "keep.txt").read_text() == "mine"


def test_data_that_is_not_squad_is_refused(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"data": [{"title": "x", "paragraphs": [{"context": "c", "qas": [{"id": 1}]}]}]}))
    assert_user_error(run_main(capsys, "finetune", "--base", "tiny", "--data", bad, "--out", tmp_path / "o"), "SQuAD")
