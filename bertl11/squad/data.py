"""SQuAD v2 questions as a flat HF `datasets.Dataset`: id, title, context, question, answers{text, answer_start}.

`--data` takes:
    hub     rajpurkar/squad_v2, validation split, through `datasets.load_dataset` (needs the hub or its cache)
    FILE    a SQuAD-format JSON file ({"version", "data": [articles]}), e.g. data/squad/dev-v2.0.json
    auto    the hub when it answers within a few seconds, else data/squad/dev-v2.0.json under the current
            directory (the repository's copy, from a checkout; an installed package holds no SQuAD data)

A local file is parsed with `json` and flattened here rather than by `load_dataset("json", field="data")`:
that loader yields one row per article with paragraphs nested two lists deep, which `datasets` cannot
explode into question rows by itself, it infers an Arrow schema that breaks on files whose questions
carry different optional fields, and it writes an Arrow cache for a file we read in well under a second.
Parsing the nesting ourselves also lets a malformed file say exactly where it is malformed.
"""

from __future__ import annotations

from pathlib import Path

from .. import hub
from ..errors import UserError, require_at_least
from ..files import read_json

HUB_DATASET = "rajpurkar/squad_v2"
HUB_SPLIT = "validation"
LOCAL_DEV_FILE = Path("data") / "squad" / "dev-v2.0.json"  # relative: the checkout's copy, run from its root


def _features():
    from datasets import Features, Sequence, Value

    return Features({
        "id": Value("string"),
        "title": Value("string"),
        "context": Value("string"),
        "question": Value("string"),
        "answers": Sequence({"text": Value("string"), "answer_start": Value("int32")}),
    })


def _expect(value, kind: type, where: str, path):
    if not isinstance(value, kind) or isinstance(value, bool):
        raise UserError(f"{path} is not a SQuAD file: {where} should be a JSON {kind.__name__}, not {type(value).__name__}")
    return value


def flatten_squad(document, path="the file") -> list[dict]:
    """The nested SQuAD structure -> one record per question (the hub dataset's columns)."""
    _expect(document, dict, "the top level", path)
    if "data" not in document:
        raise UserError(f"{path} is not a SQuAD file: it has no 'data' list of articles")
    records = []
    for a, article in enumerate(_expect(document["data"], list, "'data'", path)):
        _expect(article, dict, f"article {a}", path)
        title = article.get("title", "")
        for p, paragraph in enumerate(_expect(article.get("paragraphs"), list, f"article {a} 'paragraphs'", path)):
            where = f"article {a} paragraph {p}"
            _expect(paragraph, dict, where, path)
            context = _expect(paragraph.get("context"), str, f"{where} 'context'", path)
            for q, qa in enumerate(_expect(paragraph.get("qas"), list, f"{where} 'qas'", path)):
                at = f"{where} question {q}"
                _expect(qa, dict, at, path)
                answers = _expect(qa.get("answers", []), list, f"{at} 'answers'", path)
                for n, answer in enumerate(answers):
                    _expect(answer, dict, f"{at} answer {n}", path)
                    _expect(answer.get("text"), str, f"{at} answer {n} 'text'", path)
                    _expect(answer.get("answer_start"), int, f"{at} answer {n} 'answer_start'", path)
                records.append({
                    "id": _expect(qa.get("id"), str, f"{at} 'id'", path),
                    "title": str(title),
                    "context": context,
                    "question": _expect(qa.get("question"), str, f"{at} 'question'", path),
                    "answers": {"text": [x["text"] for x in answers], "answer_start": [x["answer_start"] for x in answers]},
                })
    if not records:
        raise UserError(f"{path} holds no questions")
    return records


def read_squad_file(path: str | Path):
    """A local SQuAD-format JSON file as a flat `datasets.Dataset`."""
    from datasets import Dataset

    path = Path(path)
    document = read_json(path, "SQuAD file")
    return Dataset.from_list(flatten_squad(document, path), features=_features())


def read_hub(split: str = HUB_SPLIT):
    """A split of the hub dataset as a flat `datasets.Dataset` with the local file's columns."""
    dataset = hub.dataset_split(HUB_DATASET, split)
    return dataset.select_columns(list(_features())).cast(_features())


def load_squad(data: str = "auto", limit: int | None = None, *, split: str = "all", sample: int | None = None,
               seed: int = 0):
    """SQuAD v2 questions in data order: those of `split` (`squad.split`), then the first `limit` of them,
    or `sample` of them drawn with `seed`."""
    from .split import draw_sample, select_split

    if data == "hub":
        dataset = read_hub()
    elif data == "auto":
        if hub.reachable(HUB_DATASET, "dataset"):
            dataset = read_hub()
        elif LOCAL_DEV_FILE.is_file():
            dataset = read_squad_file(LOCAL_DEV_FILE)
        else:
            raise UserError(f"the hub is unreachable and there is no {LOCAL_DEV_FILE} here; pass --data FILE")
    else:
        dataset = read_squad_file(data)
    dataset = select_split(dataset, split)
    if limit is not None and sample is not None:
        raise UserError("--limit and --sample both choose questions; give one")
    if sample is not None:
        return draw_sample(dataset, sample, seed)
    if limit is not None:
        require_at_least("--limit", limit)
        dataset = dataset.select(range(min(limit, len(dataset))))
    return dataset


def answers_by_id(dataset) -> dict[str, list[str]]:
    """question id -> the data's answer texts ([] for an unanswerable question), what the scorer needs."""
    return dict(zip(dataset["id"], (answers["text"] for answers in dataset["answers"])))
