"""The fixed split of SQuAD v2 articles: what is held out, what may be trained on, what picks the threshold.

The 12 articles of the packaged demo input (`bertl11/data/input_data.json`) are held out: nothing is ever trained
on them, and every number or answer the project shows (demo, notebooks, widget presets, accuracy tables)
comes from them. On dev-v2.0.json they hold 4,389 questions. The other 23 dev articles (7,484 questions)
are the training pool; `bertl11 finetune` carves its validation articles (for the best epoch and the
null-score threshold) out of the end of that pool, in file order.
"""

from __future__ import annotations

from ..errors import UserError

HELD_OUT_ARTICLES = (
    "Normans", "Computational_complexity_theory", "Southern_California", "Steam_engine", "Oxygen",
    "Amazon_rainforest", "Black_Death", "Harvard_University", "Immune_system", "Rhine", "Warsaw",
    "Packet_switching",
)
SPLITS = ("all", "held-out", "train-pool")
SPLIT_HELP = ("which articles: all, held-out (the 12 of the packaged demo input, never trained on) or train-pool "
              "(the rest; default all)")


def select_split(dataset, split: str):
    """The questions of `dataset` (flat, with a title column) whose articles belong to `split`."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    if split == "all":
        return dataset
    held_out = frozenset(HELD_OUT_ARTICLES)
    keep = [i for i, title in enumerate(dataset["title"]) if (title in held_out) == (split == "held-out")]
    if not keep:
        raise UserError(f"the data holds no {split} questions")
    return dataset.select(keep)


def train_validation(dataset, validation_articles: int):
    """(train, validation): the training pool, its last `validation_articles` articles set aside."""
    pool = select_split(dataset, "train-pool")
    titles = list(dict.fromkeys(pool["title"]))  # article order as in the file
    if not 0 <= validation_articles < len(titles):
        raise UserError(f"--validation-articles must be from 0 to {len(titles) - 1} for this data, not {validation_articles}")
    validation = frozenset(titles[len(titles) - validation_articles:]) if validation_articles else frozenset()
    in_validation = [title in validation for title in pool["title"]]
    train = pool.select([i for i, v in enumerate(in_validation) if not v])
    return train, pool.select([i for i, v in enumerate(in_validation) if v])


def draw_sample(dataset, count: int, seed: int):
    """`count` questions drawn without replacement with `seed`, in data order (a reproducible slice)."""
    import numpy as np

    if count < 1:
        raise UserError(f"--sample must be at least 1, not {count}")
    if count >= len(dataset):
        return dataset
    chosen = np.random.default_rng(seed).choice(len(dataset), size=count, replace=False)
    return dataset.select(sorted(chosen.tolist()))
