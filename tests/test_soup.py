"""`bertl11 soup`: the averaged model is the element-wise mean of its ingredients, validated for its own
threshold, and only models that can be averaged are accepted.

The default run soups two perturbed copies of the tiny model (written as a fine-tune writes its output), which
takes seconds; the run of two real fine-tunes, their soup and a demo on it is marked slow."""

import json
from dataclasses import asdict, replace

import pytest
import torch
from safetensors.torch import load_file

from bertl11.errors import UserError
from bertl11.modelcard import FILE as MODEL_CARD
from bertl11.modelcard import ModelCard
from bertl11.sources import resolve_model
from bertl11.training.delta import provenance
from bertl11.training.output import save
from bertl11.training.recipe import Recipe
from bertl11.training.soup import average
from conftest import assert_user_error, run_cli, run_main


def bertl11(*args):
    return run_cli(*args, timeout=900)


def perturbed(state: dict, seed: int, scale: float = 1e-2) -> dict:
    """`state` with seeded noise added to every tensor, as a fine-tune's own changes would be."""
    generator = torch.Generator().manual_seed(seed)
    return {name: value + scale * torch.randn(value.shape, generator=generator) for name, value in state.items()}


@pytest.fixture(scope="module")
def tiny():
    return resolve_model("tiny")


def test_average_is_the_elementwise_mean_of_perturbed_weights(tiny):
    states = [perturbed(tiny.state_dict(), seed) for seed in (1, 2, 3)]
    averaged = average(states)
    assert set(averaged) == set(states[0])
    for name, value in averaged.items():
        expected = torch.stack([state[name].double() for state in states]).mean(dim=0).float()
        torch.testing.assert_close(value, expected, rtol=0, atol=1e-7)
        assert value.dtype == torch.float32
    name = "qa_outputs.weight"
    assert all(not torch.equal(averaged[name], state[name]) for state in states)


@pytest.mark.parametrize("change", ["missing tensor", "other shape"])
def test_average_refuses_models_with_different_tensors(tiny, change):
    first = tiny.state_dict()
    second = dict(first)
    if change == "missing tensor":
        del second["qa_outputs.bias"]
    else:
        second["qa_outputs.bias"] = torch.zeros(3)
    with pytest.raises(UserError, match="different tensors"):
        average([first, second])


def validation_article(small_squad) -> str:
    """The small data's last article: what a fine-tune with --validation-articles 1 validates on."""
    return json.loads(small_squad.read_text())["data"][-1]["title"]


def ingredient_card(tiny, small_squad, seed: int, **changes) -> ModelCard:
    """The card `bertl11 finetune --base tiny --validation-articles 1` writes, for a run with `seed`."""
    recipe = Recipe(batch_size=8, max_seq_len=128, doc_stride=48, seed=seed, validation_articles=1, precision="float32")
    card = ModelCard(base="tiny", base_fingerprint=tiny.fingerprint, base_card=None, data=str(small_squad),
                     recipe=asdict(recipe), train_questions=30, validation_articles=[validation_article(small_squad)],
                     na_prob_threshold=0.5, log={"steps": 4, "best_epoch": 1, "epochs": [{"epoch": 1, "best_f1": 50.0}]})
    return replace(card, **changes)


@pytest.fixture(scope="module")
def made_ingredients(tmp_path_factory, small_squad, tiny):
    """Two perturbed tiny models, written with their cards as `bertl11 finetune` writes its output."""
    root = tmp_path_factory.mktemp("made")
    directories = []
    for seed in (1, 2):
        model = tiny.hf_model()
        model.load_state_dict(perturbed(tiny.state_dict(), seed))
        directory = root / f"seed{seed}"
        save(model, tiny.tokenizer, directory, ingredient_card(tiny, small_squad, seed))
        directories.append(directory)
    return directories


def test_the_soup_of_two_models_is_their_mean_with_its_own_validated_threshold(tmp_path, small_squad, made_ingredients):
    """The command in a new process, as a user runs it: HF loads the soup, every tensor is the mean of the
    ingredients', and the soup's threshold is its own best_f1_thresh on the ingredients' validation article."""
    from transformers import BertForQuestionAnswering

    from bertl11 import QAModel

    out = tmp_path / "soup"
    result = bertl11("soup", "--models", *map(str, made_ingredients), "--data", str(small_squad), "--out", str(out))
    assert result.returncode == 0, result.stderr
    first, second = (load_file(str(path / "model.safetensors")) for path in made_ingredients)
    averaged = BertForQuestionAnswering.from_pretrained(str(out)).state_dict()
    for name, value in first.items():
        torch.testing.assert_close(averaged[name], (value + second[name]) / 2, rtol=0, atol=1e-7)
    card = json.loads((out / MODEL_CARD).read_text())
    assert len(card["soup"]) == 2 and card["na_prob_threshold"] == card["validation"]["best_f1_thresh"]
    assert card["validation_articles"] == [validation_article(small_squad)]
    assert 0 <= card["na_prob_threshold"] <= 1
    assert QAModel.load(str(out), config="FLOAT32").source.na_prob_threshold == card["na_prob_threshold"]


@pytest.mark.parametrize("case, words", [
    ("one model", ["at least 2"]),
    ("no weights", ["no model.safetensors"]),
    ("no card", [MODEL_CARD]),
    ("other validation articles", ["validation articles"]),
    ("other base", ["base weights"]),
])
def test_models_that_cannot_be_averaged_are_refused(tmp_path, capsys, small_squad, tiny, case, words):
    """Refused before anything is loaded or written, from the ingredients' cards alone."""
    cards = [ingredient_card(tiny, small_squad, 1), ingredient_card(tiny, small_squad, 2)]
    if case == "other validation articles":
        cards[1] = replace(cards[1], validation_articles=["Force"])
    elif case == "other base":
        cards[1] = replace(cards[1], base_fingerprint="0" * 64)
    models = []
    for number, card in enumerate(cards):
        directory = tmp_path / f"model{number}"
        directory.mkdir()
        if not (case == "no weights" and number == 1):
            (directory / "model.safetensors").write_bytes(b"")  # never read: the cards are checked first
        if not (case == "no card" and number == 1):
            card.write(directory)
        models.append(directory)
    if case == "one model":
        models = models[:1]
    out = tmp_path / "out"
    assert_user_error(run_main(capsys, "soup", "--models", *models, "--data", small_squad, "--out", out), *words)
    assert not out.exists()


def test_provenance_keeps_each_stage_without_trainer_paths(tiny, small_squad):
    """A soup of a two-stage fine-tune and a one-stage one: each ingredient's chain of stages and recipes is kept,
    the directories the stages started from and the soup was averaged from are not."""
    stage1 = ingredient_card(tiny, small_squad, 1, base="minilm")
    stage2 = ingredient_card(tiny, small_squad, 2, base="/home/trainer/out/stage1", base_card=stage1)
    alone = ingredient_card(tiny, small_squad, 3, base="minilm")
    soup = ModelCard(base="minilm", base_fingerprint=tiny.fingerprint, data=str(small_squad), soup=[stage2, alone],
                     models=["/home/trainer/out/stage2", "/home/trainer/out/alone"], windows={},
                     validation_articles=stage1.validation_articles, na_prob_threshold=0.3,
                     validation={"exact": 1.0, "f1": 2.0, "HasAns_f1": 3.0, "best_f1": 4.0, "best_f1_thresh": 0.3,
                                 "NoAns_f1": 5.0})
    record = provenance(ModelCard.from_dict(json.loads(json.dumps(soup.to_dict()))))
    (stage,) = record["stages"]
    assert stage["validation"] == {"exact": 1.0, "f1": 2.0, "HasAns_f1": 3.0, "best_f1": 4.0, "best_f1_thresh": 0.3}
    chains = [[(s["base"], s["recipe"]["seed"]) for s in ingredient["stages"]] for ingredient in stage["soup"]]
    assert chains == [[("minilm", 1), ("stage 1", 2)], [("minilm", 3)]]
    assert "/home/trainer" not in json.dumps(record)


@pytest.fixture(scope="module")
def trained_ingredients(tmp_path_factory, small_squad):
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


@pytest.mark.slow
def test_real_fine_tunes_soup_and_the_soup_answers(tmp_path, capsys, small_squad, trained_ingredients):
    """What the made ingredients cannot show: the cards and weights `bertl11 finetune` itself writes are accepted,
    the soup is their mean, its provenance names no trainer paths, and `bertl11 demo` answers with it."""
    out = tmp_path / "soup"
    result = run_main(capsys, "soup", "--models", *trained_ingredients, "--data", small_squad, "--out", out)
    assert result.returncode == 0, result.stderr
    first, second = (load_file(str(path / "model.safetensors")) for path in trained_ingredients)
    assert any(not torch.equal(first[name], second[name]) for name in first)
    averaged = load_file(str(out / "model.safetensors"))
    for name, value in first.items():
        torch.testing.assert_close(averaged[name], (value + second[name]) / 2, rtol=0, atol=1e-7)
    card = ModelCard.read(out)
    assert card.na_prob_threshold == card.validation["best_f1_thresh"]
    record = provenance(card)
    (stage,) = record["stages"]
    assert [ingredient["stages"][0]["recipe"]["seed"] for ingredient in stage["soup"]] == [1, 2]
    assert str(trained_ingredients[0].parent) not in json.dumps(record)
    demo = run_main(capsys, "demo", "--model", out, "--config", "FLOAT32")
    assert demo.returncode == 0, demo.stderr
