"""`bertl11 squad` end to end in a subprocess, and its files read back by `bertl11 score`."""

import json
import os
import subprocess
import sys

import pytest

from bertl11.cli import main
from conftest import REPO, SQUAD_DEV

LIMIT = 200


def bertl11(*args, tmp_path):
    # One thread: test workers share two cores, and oversubscribed torch ops run many times slower.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "BERTL11_CACHE": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-m", "bertl11.cli", *args], cwd=REPO, env=env, capture_output=True, text=True)


def test_squad_command_on_200_dev_questions(tmp_path):
    out = tmp_path / "out"
    done = bertl11("squad", "--model", "tiny", "--data", str(SQUAD_DEV), "--limit", str(LIMIT), "--out", str(out), tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    for line in ("EM ", "HasAns", "NoAns", "best na_prob threshold", "features/s"):
        assert line in done.stdout

    dev = json.loads(SQUAD_DEV.read_text())
    paragraphs = [(p["context"], qa["id"]) for a in dev["data"] for p in a["paragraphs"] for qa in p["qas"]][:LIMIT]
    predictions = json.loads((out / "predictions.json").read_text())
    na_probs = json.loads((out / "na_probs.json").read_text())
    assert list(predictions) == list(na_probs) == [qid for _, qid in paragraphs]
    for context, qid in paragraphs:
        assert predictions[qid] in context  # "" included
        assert 0 <= na_probs[qid] <= 1 and (predictions[qid] == "") == (na_probs[qid] > 0.5)

    scored = bertl11("score", "--data", str(SQUAD_DEV), "--predictions", str(out / "predictions.json"),
                     "--na-probs", str(out / "na_probs.json"), tmp_path=tmp_path)
    assert scored.returncode == 0, scored.stderr
    assert scored.stderr.count("Missing prediction for") == 20  # the official report, shortened
    assert json.loads(scored.stdout) == json.loads((out / "eval.json").read_text())
    assert json.loads(scored.stdout)["total"] == LIMIT


@pytest.mark.parametrize("args, message", [
    (["--limit", "0"], "--limit must be at least 1"),
    (["--batch", "0"], "--batch must be at least 1"),
    (["--device", "tt", "--bucket"], "static sequence length"),
])
def test_squad_command_bad_options(tmp_path, capsys, args, message):
    code = main(["squad", "--model", "tiny", "--data", str(SQUAD_DEV), "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
