"""HF pipeline("question-answering") answers for a model directory: the reference bertl11.squad is compared with.

Runs in the reference environment (.venv-ref, transformers 4.57, the last release with this pipeline):

    .venv-ref/bin/python tests/reference/qa_pipeline.py MODEL_DIR REQUEST.json ANSWERS.json

REQUEST.json: {"questions": [...], "contexts": [...], "runs": [{"top_k": 1, "handle_impossible_answer": false}, ...]}
ANSWERS.json: {"transformers": VERSION, "runs": [per run: [per question: [{"answer", "score", "start", "end"}, ...]]]}
Every answer list is best first. The model runs once per question: each run's options go to the pipeline's own
postprocess of the same model outputs, exactly the preprocess -> forward -> postprocess chain `qa(...)` runs.
"""

import json
import sys

import transformers
from transformers import pipeline


def main(model_dir: str, request_path: str, answers_path: str) -> None:
    with open(request_path, encoding="utf-8") as f:
        request = json.load(f)
    qa = pipeline("question-answering", model=model_dir, tokenizer=model_dir, device="cpu")
    runs = [[] for _ in request["runs"]]
    for question, context in zip(request["questions"], request["contexts"]):
        example = qa.create_sample(question=question, context=context)
        outputs = [qa.forward(window) for window in qa.preprocess(example)]
        for answers, options in zip(runs, request["runs"]):
            result = qa.postprocess(outputs, **options)
            answers.append(result if isinstance(result, list) else [result])  # a single answer comes unwrapped
    with open(answers_path, "w", encoding="utf-8") as f:
        json.dump({"transformers": transformers.__version__, "runs": runs}, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
