"""`bertl11 soup`: the averaged model is the element-wise mean of its ingredients, validated for its own
threshold, and only models that can be averaged are accepted."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from bertl11.modelcard import FILE as MODEL_CARD
from bertl11.modelcard import ModelCard
from bertl11.training.delta import provenance
from conftest import assert_user_error, run_cli


def bertl11(*args):
    return run_cli(*args, timeout=900)


@pytest.fixture(scope="module")
def ingredients(tmp_path_factory, small_squad):
    """Two short tiny fine-tunes from the same base that differ in seed (data order) and learning rate."""
    root = tmp_path_factory.mktemp("ingredients")
    runs = []
    for seed, lr in ((1, "1e-3"), (2, "5e-4")):
        out = root / f"seed{seed}"
        result = bertl11("finetune", "--base", "tiny", "--data", str(small_squad), "--out", str(out), "--epochs", "1",
                         "--batch-size", "8", "--lr", lr, "--seed", str(seed), "--max-seq-len", "128", "--doc-stride", "48",
                         "--validation-articles", "1", "--precision", "float32")
        assert result.returncode == 0, result.stderr
        runs.append(out)
    return runs


@pytest.fixture(scope="module")
def soup(tmp_path_factory, small_squad, ingredients):
    out = tmp_path_factory.mktemp("soup") / "soup"
    result = bertl11("soup", "--models", *map(str, ingredients), "--data", str(small_squad), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_the_soup_is_the_mean_of_its_ingredients(ingredients, soup):
    """HF loads the soup, and every tensor is the mean of the ingredients' (which differ)."""
    from transformers import BertForQuestionAnswering

    first, second = (load_file(str(path / "model.safetensors")) for path in ingredients)
    assert any(not torch.equal(first[name], second[name]) for name in first)
    averaged = BertForQuestionAnswering.from_pretrained(str(soup)).state_dict()
    for name, value in first.items():
        torch.testing.assert_close(averaged[name], (value + second[name]) / 2, rtol=0, atol=1e-7)


def test_the_soup_ships_its_own_validated_threshold_and_answers_as_a_model_dir(soup):
    from bertl11 import QAModel

    card = json.loads((soup / MODEL_CARD).read_text())
    assert len(card["soup"]) == 2 and card["na_prob_threshold"] == card["validation"]["best_f1_thresh"]
    assert QAModel.load(str(soup), config="FLOAT32").source.na_prob_threshold == card["na_prob_threshold"]
    assert 0 <= card["na_prob_threshold"] <= 1
    result = run_cli("demo", "--model", str(soup), "--config", "FLOAT32")
    assert result.returncode == 0, result.stderr


def test_provenance_names_no_trainer_paths(soup, ingredients):
    """The manifest record of a soup keeps each ingredient's recipe, not the directories it was averaged from."""
    record = provenance(ModelCard.read(soup))
    (stage,) = record["stages"]
    assert [ingredient["stages"][0]["recipe"]["seed"] for ingredient in stage["soup"]] == [1, 2]
    assert str(ingredients[0].parent) not in json.dumps(record)


def _edited_copy(source, destination, **changes):
    shutil.copytree(source, destination)
    card = json.loads((destination / MODEL_CARD).read_text())
    card.update(changes)
    (destination / MODEL_CARD).write_text(json.dumps(card))
    return destination


@pytest.mark.parametrize("case, words", [
    ("one model", ["at least 2"]),
    ("no card", [MODEL_CARD]),
    ("other validation articles", ["validation articles"]),
    ("other base", ["base weights"]),
])
def test_models_that_cannot_be_averaged_are_refused(tmp_path, small_squad, ingredients, case, words):
    first, second = ingredients
    if case == "one model":
        models = [first]
    elif case == "no card":
        shutil.copytree(second, tmp_path / "bare")
        (tmp_path / "bare" / MODEL_CARD).unlink()
        models = [first, tmp_path / "bare"]
    elif case == "other validation articles":
        models = [first, _edited_copy(second, tmp_path / "edited", validation_articles=["Force"])]
    else:
        models = [first, _edited_copy(second, tmp_path / "edited", base_fingerprint="0" * 64)]
    out = tmp_path / "out"
    assert_user_error(bertl11("soup", "--models", *map(str, models), "--data", str(small_squad), "--out", str(out)), *words)
    assert not out.exists()
