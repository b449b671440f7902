"""`bertl11 score`: the official SQuAD v2 scores of any predictions file, as one JSON object.

    bertl11 score --data FILE --predictions PRED.json [--na-probs NA.json] [--na-prob-thresh T]
"""

from __future__ import annotations

import json

from ..errors import UserError
from ..files import read_json
from ..squad.data import answers_by_id, load_squad
from ..squad.metric import evaluate, missing_predictions, report_missing
from . import options


def add_arguments(parser) -> None:
    options.add_data_option(parser)
    parser.add_argument("--predictions", required=True, help="JSON object: question id -> predicted answer text ('' for no answer)")
    parser.add_argument("--na-probs", help="JSON object: question id -> probability that the question has no answer")
    parser.add_argument("--na-prob-thresh", type=float, default=1.0,
                        help="count a question as predicted 'no answer' when its na_prob exceeds this (default 1.0)")


def read_id_map(path: str, what: str, value_types: tuple) -> dict:
    """A JSON object of question id -> value (an answer text, an na_prob), or a one-line `UserError`."""
    data = read_json(path, f"{what} file")
    if not isinstance(data, dict):
        raise UserError(f"{what} file {path} must hold one JSON object mapping question ids to values")
    for qid, value in data.items():
        if not isinstance(value, value_types) or isinstance(value, bool):
            raise UserError(f"{what} file {path}: the value for {qid!r} is {type(value).__name__}, not {value_types[0].__name__}")
    return data


def run(args) -> int:
    predictions = read_id_map(args.predictions, "predictions", (str,))
    na_probs = read_id_map(args.na_probs, "na-probs", (float, int)) if args.na_probs else None
    answers = answers_by_id(load_squad(args.data))
    result = evaluate(answers, predictions, na_probs, args.na_prob_thresh)  # fails first when nothing matches
    report_missing(missing_predictions(answers, predictions))
    print(json.dumps(result, indent=2))
    return 0
