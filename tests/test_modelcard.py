"""The model card (`bertl11.json`): what the writers write is what the readers read, older cards still read, and a
malformed card is a one-line error naming the file and the field."""

import json

import pytest

from bertl11.errors import UserError
from bertl11.modelcard import FILE, ModelCard, lineage, root
from bertl11.sources import resolve_model

FINETUNE = {"base": "minilm", "base_fingerprint": "ab" * 32, "base_card": None, "data": "data/squad/dev-v2.0.json",
            "recipe": {"epochs": 3.0, "seed": 11}, "train_questions": 6705, "validation_articles": ["Force"],
            "na_prob_threshold": 0.25, "log": {"steps": 642, "best_epoch": 3,
                                               "epochs": [{"epoch": 3, "best_f1": 55.2}]}}
SOUP = {"base": "minilm", "base_fingerprint": "ab" * 32, "data": "data/squad/dev-v2.0.json", "soup": [FINETUNE, FINETUNE],
        "models": ["out/a", "out/b"], "windows": {"max_seq_len": 384}, "train_questions": 6705,
        "validation_articles": ["Force"], "na_prob_threshold": 0.23, "validation": {"best_f1": 57.4}}


@pytest.mark.parametrize("document", [FINETUNE, SOUP], ids=["fine-tune", "soup"])
def test_a_card_reads_back_as_written(tmp_path, document):
    card = ModelCard.from_dict(document)
    card.write(tmp_path)
    assert json.loads((tmp_path / FILE).read_text()) == document
    assert ModelCard.read(tmp_path) == card


def test_a_later_stage_keeps_its_base_card_and_the_root_is_the_first_stage():
    first = ModelCard.from_dict(FINETUNE)
    second = ModelCard.from_dict({**FINETUNE, "base": "out/stage1", "base_fingerprint": "cd" * 32,
                                  "base_card": FINETUNE, "log": {"best_epoch": 1, "epochs": [{"epoch": 1, "best_f1": 56.0}]}})
    assert lineage(second) == [first, second]
    assert root(second) == ("minilm", "ab" * 32)
    assert second.validation_best_f1() == 56.0
    assert ModelCard.from_dict(SOUP).validation_best_f1() == 57.4


def test_a_card_written_before_a_field_existed_still_reads():
    older = {key: value for key, value in FINETUNE.items() if key not in ("base_fingerprint", "base_card")}
    card = ModelCard.from_dict(older)
    assert card.base_fingerprint is None and card.base_card is None and card.na_prob_threshold == 0.25


def test_a_directory_without_a_card_has_none(tmp_path):
    assert ModelCard.read(tmp_path) is None


@pytest.mark.parametrize("document, words", [
    ([FINETUNE], ["JSON object", "list"]),
    ({**FINETUNE, "na_prob_threshold": "0.3"}, ["'na_prob_threshold'", "a number"]),
    ({**FINETUNE, "validation_articles": "Force"}, ["'validation_articles'", "list of article titles"]),
    ({**FINETUNE, "train_questions": True}, ["'train_questions'", "whole number"]),
    ({**FINETUNE, "threshold": 0.3}, ["unknown field", "'threshold'"]),
    ({**FINETUNE, "base_card": {**FINETUNE, "log": []}}, ["base_card", "'log'", "an object"]),
    ({**SOUP, "soup": [FINETUNE, 3]}, ["soup[1]", "JSON object"]),
    ({**SOUP, "recipe": {}}, ["both"]),
])
def test_a_malformed_card_is_a_one_line_error_naming_the_file_and_field(tmp_path, document, words):
    (tmp_path / FILE).write_text(json.dumps(document))
    with pytest.raises(UserError) as error:
        ModelCard.read(tmp_path)
    message = str(error.value)
    assert "\n" not in message and str(tmp_path / FILE) in message
    for word in words:
        assert word in message, message


def test_a_model_directory_answers_with_its_cards_threshold(tmp_path):
    """`--model DIR` takes the null-score threshold from the directory's card."""
    model = resolve_model("tiny").hf_model()
    model.save_pretrained(str(tmp_path), safe_serialization=True)
    resolve_model("tiny").tokenizer.save_pretrained(str(tmp_path))
    assert resolve_model(str(tmp_path)).na_prob_threshold is None
    ModelCard.from_dict(FINETUNE).write(tmp_path)
    assert resolve_model(str(tmp_path)).na_prob_threshold == 0.25
