"""The SQuAD v2 scorer on crafted cases whose expected values are worked out by hand below."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bertl11.cli import main
from bertl11.squad.metric import evaluate, exact_match, f1_score, normalize_answer
from conftest import SQUAD_DEV


@pytest.mark.parametrize("text, normalized", [
    ("The Eiffel Tower", "eiffel tower"),  # article and case
    ("  an   apple,  a pear; the end.", "apple pear end"),  # articles anywhere, punctuation, whitespace
    ("theatre anthem", "theatre anthem"),  # "the"/"an" inside words stay
    ("Rock 'n' Roll!", "rock n roll"),  # apostrophes are punctuation
    ("A", ""),
    ("", ""),
])
def test_normalize_answer(text, normalized):
    assert normalize_answer(text) == normalized


@pytest.mark.parametrize("gold, prediction, exact, f1", [
    ("the Eiffel Tower", "Eiffel tower.", 1, 1.0),
    # gold {eiffel, tower}, prediction {eiffel, tower, in, paris}: 2 shared, P = 2/4, R = 2/2, F1 = 2PR/(P+R) = 2/3
    ("the Eiffel Tower", "Eiffel Tower in Paris", 0, 2 / 3),
    # repeated tokens count once per occurrence: gold {new:2, york:1}, prediction {new:1}: P = 1, R = 1/3, F1 = 1/2
    ("New New York", "new", 0, 0.5),
    ("Paris", "London", 0, 0.0),
    ("", "", 1, 1.0),  # unanswerable and predicted so
    ("", "Paris", 0, 0.0),
    ("Paris", "", 0, 0.0),
    ("the", "", 1, 1.0),  # normalises to empty
])
def test_exact_and_f1(gold, prediction, exact, f1):
    assert exact_match(gold, prediction) == exact
    assert f1_score(gold, prediction) == pytest.approx(f1)


ANSWERS = {
    "q1": ["Denver Broncos", "The Denver Broncos", "Broncos"],  # several golds: the best one counts
    "q2": ["1066"],
    "q3": [],  # unanswerable
    "q4": [],
}


def test_evaluate_splits_and_multiple_golds():
    predictions = {"q1": "broncos!", "q2": "in 1066", "q3": "", "q4": "Normandy"}
    # q1: EM 1, F1 1 (matches "Broncos"); q2: EM 0, F1: {in, 1066} vs {1066} -> P 1/2, R 1 -> 2/3;
    # q3: "" for unanswerable -> 1, 1; q4: an answer for unanswerable -> 0, 0.
    result = evaluate(ANSWERS, predictions)
    assert result == pytest.approx({
        "exact": 100 * 2 / 4, "f1": 100 * (1 + 2 / 3 + 1 + 0) / 4, "total": 4,
        "HasAns_exact": 100 * 1 / 2, "HasAns_f1": 100 * (1 + 2 / 3) / 2, "HasAns_total": 2,
        "NoAns_exact": 100 * 1 / 2, "NoAns_f1": 100 * 1 / 2, "NoAns_total": 2,
    })
    assert list(result) == ["exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total",
                            "NoAns_exact", "NoAns_f1", "NoAns_total"]


def test_na_prob_threshold_and_best_threshold():
    predictions = {"q1": "Broncos", "q2": "in 1066", "q3": "Paris", "q4": "Normandy"}
    na_probs = {"q1": 0.1, "q2": 0.6, "q3": 0.3, "q4": 0.8}
    # Threshold 0.5: q2 and q4 count as "no answer" -> q1 1, q2 0 (it has an answer), q3 0, q4 1.
    result = evaluate(ANSWERS, predictions, na_probs, na_prob_thresh=0.5)
    assert result["exact"] == pytest.approx(50.0) and result["f1"] == pytest.approx(50.0)
    # Sweep from all "no answer" (2 of 4 right): answer q1 (+1 -> 3, at 0.1), q3 (-1 -> 2), q2 (+2/3 F1, +0 EM),
    # q4 (-1). The best is 3 of 4 at threshold 0.1 for both EM and F1.
    assert result["best_exact"] == pytest.approx(75.0) and result["best_exact_thresh"] == 0.1
    assert result["best_f1"] == pytest.approx(75.0) and result["best_f1_thresh"] == 0.1


def test_best_threshold_when_answering_everything_is_best():
    predictions = {"q1": "Broncos", "q2": "1066", "q3": "", "q4": ""}
    result = evaluate(ANSWERS, predictions, {"q1": 0.9, "q2": 0.7, "q3": 0.2, "q4": 0.4})
    # Every prediction is right: the score climbs to 4/4 when the last question (na_prob 0.9) is answered.
    assert result["best_f1"] == pytest.approx(100.0) and result["best_f1_thresh"] == 0.9
    assert result["exact"] == pytest.approx(100.0)  # default threshold 1.0 answers everything


def test_missing_predictions_are_left_out():
    result = evaluate(ANSWERS, {"q1": "Broncos", "q3": "x"})
    assert result["total"] == 2 and result["exact"] == pytest.approx(50.0)
    assert result["HasAns_total"] == 1 and result["NoAns_total"] == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from(["", "a cat", "the dog", "cat dog"]),
                          st.sampled_from(["", "cat", "dog", "a bird"])), min_size=1, max_size=12),
       st.randoms(use_true_random=False))
def test_best_scores_are_the_best_over_thresholds(rows, rng):
    """The sweep's best equals the best of scoring at every threshold (distinct na_probs, so no ties)."""
    answers = {f"q{i}": [gold] if has else [] for i, (has, gold, _) in enumerate(rows)}
    predictions = {f"q{i}": prediction for i, (_, _, prediction) in enumerate(rows)}
    na_probs = dict(zip(answers, rng.sample(range(1, 1000), len(rows))))
    na_probs = {q: p / 1000 for q, p in na_probs.items()}
    result = evaluate(answers, predictions, na_probs)
    for key in ("exact", "f1"):
        by_threshold = {t: evaluate(answers, predictions, na_probs, t)[key] for t in [0.0, *na_probs.values()]}
        assert result[f"best_{key}"] == pytest.approx(max(by_threshold.values()))
        assert by_threshold[result[f"best_{key}_thresh"]] == pytest.approx(result[f"best_{key}"])


def write(path, data):
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def test_score_command_on_the_dev_set(tmp_path, capsys):
    """Predicting each question's first gold answer ("" when none) scores 100 on all 11,873 questions."""
    dev = json.loads(SQUAD_DEV.read_text())
    qas = [qa for article in dev["data"] for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
    predictions = {qa["id"]: qa["answers"][0]["text"] if qa["answers"] else "" for qa in qas}
    na_probs = {qa["id"]: 0.5 for qa in qas}
    code = main(["score", "--data", str(SQUAD_DEV), "--predictions", write(tmp_path / "p.json", predictions),
                 "--na-probs", write(tmp_path / "na.json", na_probs)])
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert result["total"] == 11873 and result["HasAns_total"] == 5928 and result["NoAns_total"] == 5945
    assert result["exact"] == result["f1"] == result["best_f1"] == 100.0


def test_score_command_reports_missing_predictions(tmp_path, capsys):
    data = {"version": "v2.0", "data": [{"title": "t", "paragraphs": [{"context": "Paris is in France.", "qas": [
        {"id": "a", "question": "Where?", "answers": [{"text": "France", "answer_start": 12}]},
        {"id": "b", "question": "Who?", "answers": []}]}]}]}
    code = main(["score", "--data", write(tmp_path / "d.json", data), "--predictions", write(tmp_path / "p.json", {"a": "France"})])
    captured = capsys.readouterr()
    assert code == 0
    assert "Missing prediction for b" in captured.err
    assert json.loads(captured.out) == {"exact": 100.0, "f1": 100.0, "total": 1, "HasAns_exact": 100.0,
                                        "HasAns_f1": 100.0, "HasAns_total": 1}


@pytest.mark.parametrize("predictions, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "one JSON object"),
    ('{"a": 3}', "not str"),
    ('{"zzz": "x"}', "no prediction matches"),
])
def test_score_command_rejects_bad_predictions(tmp_path, capsys, predictions, message):
    code = main(["score", "--data", str(SQUAD_DEV), "--predictions", write(tmp_path / "p.json", predictions)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_score_command_rejects_incomplete_na_probs(tmp_path, capsys):
    data = {"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "a", "question": "q", "answers": []}]}]}]}
    code = main(["score", "--data", write(tmp_path / "d.json", data), "--predictions", write(tmp_path / "p.json", {"a": ""}),
                 "--na-probs", write(tmp_path / "n.json", {"b": 0.1})])
    assert code == 2 and "na-probs lack" in capsys.readouterr().err


def test_threshold_curve_equals_evaluate_at_every_threshold():
    """The one-pass curve against the plain definition: evaluate() with that na_prob threshold."""
    from bertl11.squad.metric import threshold_curve

    answers = {"a": ["the Cat"], "b": [], "c": ["dog", "a dog"], "d": [], "e": ["red fox"]}
    predictions = {"a": "cat", "b": "", "c": "big dog", "d": "mouse", "e": ""}
    na_probs = {"a": 0.2, "b": 0.9, "c": 0.5, "d": 0.5, "e": 0.7}
    curve = threshold_curve(answers, predictions, na_probs)
    assert [t for t, _, _ in curve] == [0.0, 0.2, 0.5, 0.7, 0.9]
    for threshold, exact, f1 in curve:
        expected = evaluate(answers, predictions, na_probs, na_prob_thresh=threshold)
        assert exact == pytest.approx(expected["exact"]) and f1 == pytest.approx(expected["f1"])
