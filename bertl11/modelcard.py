"""A model card: the `bertl11.json` beside a trained model's weights, what it was made from and how, and its threshold.

Two kinds of model carry one:
- a fine-tune (`bertl11 finetune`): its `base` (a --model value or an earlier fine-tune's directory), that base's
  fingerprint and, when the base was itself a fine-tune, its card (`base_card`), the data, the `recipe` and the
  training `log`;
- a soup (`bertl11 soup`): the `base` its ingredients' first stages share, each ingredient's card (`soup`) and
  directory (`models`), the validation `windows` and the soup's own `validation` scores.
Both record the training questions, the validation articles and the null-score threshold chosen on them
(`na_prob_threshold`), which `answer`, `squad`, `demo` and the widget use by default.

Cards written before a field existed lack it (it reads as None); a field of the wrong type, or one this version
does not know, is a one-line `UserError` naming the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from .errors import UserError
from .files import read_json, write_json

FILE = "bertl11.json"
FINETUNE_FIELDS = ("base", "base_fingerprint", "base_card", "data", "recipe", "train_questions", "validation_articles",
                   "na_prob_threshold", "log")
SOUP_FIELDS = ("base", "base_fingerprint", "data", "soup", "models", "windows", "train_questions", "validation_articles",
               "na_prob_threshold", "validation")


@dataclass(frozen=True)
class ModelCard:
    base: str | None = None
    base_fingerprint: str | None = None
    data: str | None = None
    train_questions: int | None = None
    validation_articles: list[str] | None = None
    na_prob_threshold: float | None = None
    # a fine-tune's
    base_card: ModelCard | None = None
    recipe: dict | None = None  # `training.recipe.Recipe` as a dict (older cards lack the newer settings)
    log: dict | None = None  # `training.loop.train`'s log
    # a soup's
    soup: list[ModelCard] | None = None
    models: list[str] | None = None
    windows: dict | None = None  # the window settings it was validated with
    validation: dict | None = None  # its official scores on the validation articles

    @property
    def is_soup(self) -> bool:
        return self.soup is not None

    @classmethod
    def from_dict(cls, document, where: str = "model card") -> ModelCard:
        """The card a JSON document describes, or a one-line `UserError` naming `where` and the field at fault."""
        if not isinstance(document, dict):
            raise UserError(f"{where} should hold a JSON object, not {type(document).__name__}")
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(document) - known)
        if unknown:
            raise UserError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}")
        values = {name: _checked(name, value, where) for name, value in document.items()}
        if values.get("soup") is not None and any(values.get(name) is not None for name in ("base_card", "recipe", "log")):
            raise UserError(f"{where} holds both a soup's ingredients and a fine-tune's recipe or log")
        return cls(**values)

    def to_dict(self) -> dict:
        names = SOUP_FIELDS if self.is_soup else FINETUNE_FIELDS
        document = {name: getattr(self, name) for name in names}
        if self.base_card is not None:
            document["base_card"] = self.base_card.to_dict()
        if self.is_soup:
            document["soup"] = [ingredient.to_dict() for ingredient in self.soup]
        return document

    @classmethod
    def read(cls, directory: Path) -> ModelCard | None:
        """The card of a model directory, or None when it has none."""
        path = Path(directory) / FILE
        if not path.is_file():
            return None
        return cls.from_dict(read_json(path, "model card"), str(path))

    def write(self, directory: Path) -> None:
        write_json(Path(directory) / FILE, self.to_dict())

    def validation_best_f1(self) -> float | None:
        """The best F1 the model reached on its validation articles: its kept epoch's, or a soup's own."""
        if self.validation is not None:
            return self.validation["best_f1"]
        log = self.log or {}
        kept = [epoch for epoch in log.get("epochs", []) if epoch["epoch"] == log.get("best_epoch")]
        return kept[0].get("best_f1") if kept else None


def lineage(card: ModelCard) -> list[ModelCard]:
    """The fine-tuning stages behind a card, first stage first (a stage may start from an earlier output)."""
    stages = [card]
    while stages[0].base_card is not None:
        stages.insert(0, stages[0].base_card)
    return stages


def root(card: ModelCard) -> tuple[str | None, str | None]:
    """(name, fingerprint) of the weights a model's first fine-tuning stage started from."""
    first = lineage(card)[0]
    return first.base, first.base_fingerprint


def _is_text_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


# field -> (what it must be, check); None is always allowed (a field an older card lacks, or one of the other kind)
_CHECKS = {
    "base": ("a string", lambda v: isinstance(v, str)),
    "base_fingerprint": ("a string", lambda v: isinstance(v, str)),
    "data": ("a string", lambda v: isinstance(v, str)),
    "train_questions": ("a whole number", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "validation_articles": ("a list of article titles", _is_text_list),
    "na_prob_threshold": ("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
    "base_card": ("a model card object", lambda v: isinstance(v, dict)),
    "recipe": ("an object", lambda v: isinstance(v, dict)),
    "log": ("an object", lambda v: isinstance(v, dict)),
    "soup": ("a list of model card objects", lambda v: isinstance(v, list)),
    "models": ("a list of directories", _is_text_list),
    "windows": ("an object", lambda v: isinstance(v, dict)),
    "validation": ("an object", lambda v: isinstance(v, dict)),
}


def _checked(name: str, value, where: str):
    if value is None:
        return None
    what, check = _CHECKS[name]
    if not check(value):
        raise UserError(f"{where}: {name!r} should be {what}, not {type(value).__name__}")
    if name == "base_card":
        return ModelCard.from_dict(value, f"{where} base_card")
    if name == "soup":
        return [ModelCard.from_dict(item, f"{where} soup[{index}]") for index, item in enumerate(value)]
    if name == "na_prob_threshold":
        return float(value)
    return value
