"""Loading SQuAD v2: the committed dev file, SQuAD-format files, and clear errors for bad ones."""

import json

import pytest

from bertl11.cli import main
from bertl11.errors import UserError
from bertl11.squad import answers_by_id, load_squad
from bertl11.squad.data import flatten_squad
from conftest import SQUAD_DEV


def test_dev_file_counts():
    """The counts published for SQuAD v2 dev: 11,873 questions, 5,928 answerable."""
    data = load_squad(str(SQUAD_DEV))
    answers = answers_by_id(data)
    assert len(data) == len(answers) == 11873
    assert sum(bool(texts) for texts in answers.values()) == 5928
    assert data.column_names == ["id", "title", "context", "question", "answers"]


def test_records_follow_the_nested_file():
    raw = json.loads(SQUAD_DEV.read_text())["data"]
    paragraph = raw[3]["paragraphs"][2]
    qa = paragraph["qas"][1]
    data = load_squad(str(SQUAD_DEV))
    row = data[list(data["id"]).index(qa["id"])]
    assert row["context"] == paragraph["context"] and row["question"] == qa["question"]
    assert row["title"] == raw[3]["title"]
    assert row["answers"]["text"] == [a["text"] for a in qa["answers"]]
    assert row["answers"]["answer_start"] == [a["answer_start"] for a in qa["answers"]]


def test_limit_keeps_data_order():
    first = json.loads(SQUAD_DEV.read_text())["data"][0]["paragraphs"][0]["qas"]
    data = load_squad(str(SQUAD_DEV), limit=3)
    assert list(data["id"]) == [qa["id"] for qa in first[:3]]


def test_auto_uses_the_committed_file_offline(monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    assert len(load_squad("auto", limit=5)) == 5


GOOD_QA = {"id": "q", "question": "Q?", "answers": [{"text": "a", "answer_start": 0}]}


@pytest.mark.parametrize("document, message", [
    ([], "the top level should be a JSON dict"),
    ({"version": "v2.0"}, "no 'data' list"),
    ({"data": [{"paragraphs": [{"qas": [GOOD_QA]}]}]}, "article 0 paragraph 0 'context'"),
    ({"data": [{"paragraphs": [{"context": "a", "qas": [{"question": "Q?", "answers": []}]}]}]}, "question 0 'id'"),
    ({"data": [{"paragraphs": [{"context": "a", "qas": [{**GOOD_QA, "answers": [{"text": "a"}]}]}]}]}, "'answer_start'"),
    ({"data": [{"paragraphs": []}]}, "holds no questions"),
])
def test_malformed_documents(document, message):
    with pytest.raises(UserError, match=message):
        flatten_squad(document)


@pytest.mark.parametrize("content, message", [("{oops", "not valid JSON"), ('{"data": 3}', "'data' should be a JSON list")])
def test_bad_file_is_one_line_error(tmp_path, capsys, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    code = main(["score", "--data", str(bad), "--predictions", str(bad)])  # predictions are read first: also bad
    code_squad = main(["squad", "--model", "tiny", "--data", str(bad), "--out", str(tmp_path / "out")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == code_squad == 2 and len(lines) == 2
    assert message in lines[1]


def test_missing_file(tmp_path, capsys):
    assert main(["squad", "--model", "tiny", "--data", str(tmp_path / "nope.json"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
