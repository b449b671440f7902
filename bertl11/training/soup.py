"""A model soup: one model from the average of several fine-tuned models' weights (what `bertl11 soup` makes).

Fine-tunes that start from the same weights stay in one basin of the loss, so the element-wise mean of
their weights is itself a good model, and usually a better one than any of them: it averages out the
noise each run's data order and learning rate added (Wortsman et al. 2022, "Model soups"). The soup costs
no training and answers at the cost of one model.

The ingredients must share what makes averaging meaningful and the threshold honest:
- the same root: the first stage of every ingredient started from the same base weights (fingerprint);
- the same tensors (names and shapes);
- the same validation articles. The soup is validated on them to choose its own null-score threshold,
  as `bertl11 finetune` does, so no ingredient may have trained on them.

The output is a standard HF directory like `bertl11 finetune`'s, whose model card records each
ingredient's card under `soup`.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .. import modelcard
from ..modelcard import ModelCard
from .data import load_training_data
from .output import fresh_output, save
from .recipe import Recipe, autocast_dtype

MINIMUM_INGREDIENTS = 2
WINDOW_KEYS = ("max_seq_len", "doc_stride", "batch_size")  # how validation windows and batches are made


def validation_windows(card: ModelCard) -> Recipe:
    """The window settings a model was validated with: a fine-tune's recipe, or a soup's own `windows`."""
    settings = card.recipe or card.windows or {}
    return Recipe(**{key: settings[key] for key in WINDOW_KEYS if key in settings})


def _ingredient(directory: str) -> tuple[Path, ModelCard]:
    """(directory, model card) of one fine-tuned model, or a UserError saying why it cannot be one."""
    path = Path(directory)
    if not (path / "model.safetensors").is_file():
        raise UserError(f"--models {directory}: not a fine-tuned model directory (no model.safetensors)")
    card = ModelCard.read(path)
    if card is None:
        raise UserError(f"--models {directory}: no {modelcard.FILE}; only `bertl11 finetune` outputs can be averaged")
    return path, card


def _agreed(cards: list[ModelCard], key, what: str):
    """The one value `key(card)` takes on every card, or a UserError naming what differs."""
    values = [key(card) for card in cards]
    if any(value != values[0] for value in values):
        raise UserError(f"--models: the models differ in {what}, so they cannot be averaged")
    return values[0]


def average(states: list[dict]) -> dict:
    """The element-wise mean of state dicts with the same tensors (float64 sums, float32 result)."""
    names = {name: tuple(value.shape) for name, value in states[0].items()}
    for state in states[1:]:
        if {name: tuple(value.shape) for name, value in state.items()} != names:
            raise UserError("--models: the models hold different tensors (names or shapes), so they cannot be averaged")
    return {name: (sum(state[name].double() for state in states) / len(states)).float() for name in names}


def make_soup(models: list[str], data: str, out: str) -> tuple[Path, list[tuple[Path, ModelCard]], dict]:
    """Average the fine-tuned `models` into a new directory `out`, validated on their validation articles of
    `data` for its own null-score threshold. Returns (out, [(ingredient, its card)], the soup's validation scores)."""
    from ..squad.split import train_validation

    if len(models) < MINIMUM_INGREDIENTS:
        raise UserError(f"--models needs at least {MINIMUM_INGREDIENTS} directories to average, not {len(models)}")
    ingredients = [_ingredient(directory) for directory in models]
    cards = [card for _, card in ingredients]
    base, base_fingerprint = _agreed(cards, modelcard.root, "the base weights their first stage started from")
    articles = _agreed(cards, lambda card: card.validation_articles, "their validation articles")
    if not articles:
        raise UserError("--models: the models were fine-tuned without validation articles; the soup needs them for its threshold")
    path = fresh_output(out)
    _, validation_set = train_validation(load_training_data(data), len(articles))
    if sorted(set(validation_set["title"])) != sorted(articles):
        raise UserError(f"--data {data}: its validation articles are not the ones the models validated on ({', '.join(articles)})")

    from safetensors.torch import load_file
    from transformers import AutoTokenizer, BertForQuestionAnswering

    from .loop import validate

    first = ingredients[0][0]
    model = BertForQuestionAnswering.from_pretrained(str(first))
    model.load_state_dict(average([load_file(str(directory / "model.safetensors")) for directory, _ in ingredients]))
    tokenizer = AutoTokenizer.from_pretrained(str(first))
    windows = validation_windows(cards[0])
    scores = validate(model, tokenizer, validation_set, windows, autocast_dtype("auto"))
    card = ModelCard(base=base, base_fingerprint=base_fingerprint, data=str(data),
                     soup=cards, models=[str(directory) for directory, _ in ingredients],
                     windows={key: getattr(windows, key) for key in WINDOW_KEYS},
                     # the ingredients trained on the same pool; one may have used only part of it (--limit)
                     train_questions=max(ingredient.train_questions or 0 for ingredient in cards),
                     validation_articles=articles, na_prob_threshold=scores["best_f1_thresh"], validation=scores)
    save(model, tokenizer, path, card)
    return path, ingredients, scores
