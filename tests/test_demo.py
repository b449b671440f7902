"""`bertl11 demo` driven as a user would: the good path, and every class of bad input."""

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bertl11 import cli
from bertl11.errors import UserError
from bertl11.demo import read_inputs
from bertl11.packaged import DEMO_INPUT
from conftest import assert_user_error, run_cli, run_main

FAST = ["--model", "tiny", "--config", "FLOAT32"]


bertl11 = run_cli  # the smoke tests: the command as a user runs it


def write(tmp_path, document):
    """bytes and str are written as they are; anything else as JSON."""
    path = tmp_path / "inputs.json"
    if isinstance(document, bytes):
        path.write_bytes(document)
    else:
        path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def test_packaged_batch_is_answered(tmp_path):
    """Twelve answers; each is empty or a span of its own context, in the packaged input's order."""
    result = bertl11("demo", *FAST, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    inputs = json.loads(DEMO_INPUT.read_text())
    assert report["batch"] == 12 and len(report["answers"]) == 12
    assert report["sequences"] > 12, "the 735-token context needs more than one window"
    for given_input, answer in zip(inputs, report["answers"]):
        assert answer["question"] == given_input["question"]
        assert given_input["context"][answer["start"] : answer["end"]] == answer["answer"]
    for key in ("preprocessing_s", "weight_loading_s", "first_run_s", "cached_run_s", "postprocessing_s"):
        assert report["timings"][key] >= 0
    assert report["throughput"] > 0


def test_human_report_shows_every_input_and_the_timings():
    result = bertl11("demo", *FAST)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("question:") == 12 and result.stdout.count("answer:") == 12
    for label in ("preprocessing", "weight loading", "first run", "cached run", "inferences/s", "postprocessing"):
        assert label in result.stdout


def test_offline_default_model_falls_back_with_one_warning(tmp_path):
    path = write(tmp_path, json.loads(DEMO_INPUT.read_text())[:2])
    result = bertl11("demo", "--input", str(path), "--batch", "2", "--config", "FLOAT32", "--json",
                     env={"HF_HOME": str(tmp_path / "hf")})
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "minilm-squad2" in warnings[0]
    assert json.loads(result.stdout)["model"] == "minilm-squad2"


GOOD = {"context": "Paris is the capital of France.", "question": "What is the capital of France?"}


@pytest.mark.parametrize(
    "document, words",
    [
        ('{"context": "x"', ["not valid JSON"]),
        (b'[{"context": "caf\xe9", "question": "q"}]', ["not valid UTF-8"]),
        ('{"context": "x", "question": "y"}', ["expected a JSON list"]),
        ([GOOD] * 3, ["holds 3 inputs", "--batch 3"]),
        ([], ["holds no inputs"]),
        ([GOOD, "just a string"], ["input[1]", "object"]),
        ([GOOD, {"question": "q"}], ["input[1]", '"context"']),
        ([GOOD, {"context": "c", "question": ""}], ["input[1]", '"question" is empty']),
        ([GOOD, {"context": "   ", "question": "q"}], ["input[1]", '"context" is empty']),
        ([GOOD, {"context": "c", "question": 7}], ["input[1]", '"question" must be a string']),
    ],
    ids=["invalid-json", "invalid-utf8", "not-a-list", "wrong-count", "empty-list", "not-an-object", "missing-field",
         "empty-field", "blank-field", "non-string-field"],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, document, words):
    assert_user_error(run_main(capsys, "demo", *FAST, "--batch", "2", "--input", str(write(tmp_path, document))), *words)


def test_missing_file_and_directory(tmp_path, capsys):
    assert_user_error(run_main(capsys, "demo", *FAST, "--input", str(tmp_path / "nope.json")), "does not exist")
    assert_user_error(run_main(capsys, "demo", *FAST, "--input", str(tmp_path)), "is a directory")


def test_unreadable_file(tmp_path, capsys):
    path = write(tmp_path, [GOOD] * 12)
    path.chmod(0)
    if os.access(path, os.R_OK):  # root reads mode-0 files; a write-only proc file still fails to read
        path = Path("/proc/self/clear_refs")
    assert_user_error(run_main(capsys, "demo", *FAST, "--input", str(path)), "cannot read")


def test_absurdly_large_file(tmp_path, capsys):
    path = tmp_path / "huge.json"
    with open(path, "wb") as f:
        f.truncate(17 * 2**20)
    assert_user_error(run_main(capsys, "demo", *FAST, "--input", str(path)), "MiB")


def test_unknown_fields_warn_but_run(tmp_path, capsys):
    path = write(tmp_path, [dict(GOOD, source="wiki"), GOOD])
    result = run_main(capsys, "demo", *FAST, "--batch", "2", "--input", str(path), "--json")
    assert result.returncode == 0, result.stderr
    assert "input[0]" in result.stderr and "'source'" in result.stderr


@pytest.mark.parametrize("argv, words", [
    (["--model", "no-such-model"], ["unknown model", "tiny"]),
    (["--model", "/no/such/dir"], ["does not exist"]),
    (["--config", "BFLOAT4"], ["unknown config", "BFLOAT8_B-SHARDED"]),
    (["--batch", "0"], ["at least 1"]),
    (["--device", "tt", "--card", "e150", "--batch", "13"], ["Grayskull e150", "2-12"]),
    (["--device", "tt", "--card", "n300", "--batch", "9"], ["n300", "2-8"]),
])
def test_bad_options_are_one_line_and_exit_2(capsys, argv, words):
    args = ["demo", "--config", "FLOAT32", *argv] if "--config" not in argv else ["demo", *argv]
    assert_user_error(run_main(capsys, *args), *words)


def test_a_hub_model_missing_offline_is_one_line(tmp_path):
    """In a new process: the HF cache location (HF_HOME, an empty one here) is read when huggingface_hub loads."""
    result = bertl11("demo", "--config", "FLOAT32", "--model", "phiyodr/bert-large-finetuned-squad2",
                     env={"HF_HOME": str(tmp_path / "hf")})
    assert_user_error(result, "not in the HF cache", "minilm")


def test_non_bert_model_directory(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 2}))
    assert_user_error(run_main(capsys, "demo", "--model", str(tmp_path), "--config", "FLOAT32"), "not 'bert'")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["context", "question", "extra"]) | st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)
documents = st.binary(max_size=80) | json_values.map(lambda value: json.dumps(value).encode())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=documents)
def test_malformed_documents_never_traceback(tmp_path, capsys, raw):
    """Any file: a one-line error and exit 2, never a traceback (via cli.main, in process, for speed)."""
    path = write(tmp_path, raw)
    # The input file is checked before the config, so a bad config only surfaces on a valid file and no
    # model is ever loaded here.
    code = cli.main(["demo", "--batch", "2", "--input", str(path), "--config", "NO-SUCH-CONFIG"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert ("unknown config" in err) == _is_valid_batch(path)


def _is_valid_batch(path: Path) -> bool:
    try:
        read_inputs(path, 2)
    except UserError:
        return False
    return True


def test_tt_batch_limit_comes_from_the_opened_card(monkeypatch):
    """Without --card, the limits are those of the card ttnn opened (here a tiny CPU model posing as one)."""
    from bertl11.demo import QAInput, run_demo
    from bertl11.cards import get_card
    from bertl11.runtime import QAModel

    load = QAModel.load

    def load_on_n300(*args, **kwargs):
        model = load(*args, **{**kwargs, "device": "cpu"})
        model.ops.card = get_card("n300")
        return model

    monkeypatch.setattr(QAModel, "load", load_on_n300)
    with pytest.raises(UserError, match="n300.*2-8, not 9"):
        run_demo([QAInput(GOOD["context"], GOOD["question"])] * 9, "tiny", "FLOAT32", "tt", batch=9)


def pose_as_a_card(monkeypatch, card: str, seen: dict):
    """QAModel.load on the CPU posing as a model on `card`; `seen` gets the watcher variable as it was at the load."""
    from bertl11.cards import get_card
    from bertl11.runtime import QAModel

    load = QAModel.load

    def load_on_card(*args, **kwargs):
        seen["watcher"] = os.environ.get("TT_METAL_WATCHER")
        model = load(*args, **{**kwargs, "device": "cpu", "trace": False, "mesh": (1, 1)})
        model.ops.card = get_card(card)
        return model

    monkeypatch.setattr(QAModel, "load", load_on_card)


def test_tt_demo_says_in_one_line_before_it_starts_what_is_untested_on_the_card(monkeypatch, tmp_path, capsys):
    """The seed ran Wormhole with BFLOAT8_B-SHARDED only: an interleaved config there is untested on a card, and
    `demo --device tt` says so in one line before the batch runs; --watcher turns tt-metal's watcher on first."""
    import bertl11.squad.pipeline as pipeline

    monkeypatch.delenv("TT_METAL_WATCHER", raising=False)
    seen = {}
    pose_as_a_card(monkeypatch, "n150", seen)
    run_pipeline = pipeline.run_pipeline

    def run_after_the_warning(*args, **kwargs):
        seen["stderr before the run"] = capsys.readouterr().err
        return run_pipeline(*args, **kwargs)

    monkeypatch.setattr(pipeline, "run_pipeline", run_after_the_warning)
    path = write(tmp_path, [GOOD] * 2)
    code = cli.main(["demo", "--device", "tt", "--watcher", "--model", "tiny", "--config", "BFLOAT8_B-L1", "--batch", "2",
                     "--input", str(path)])
    assert code == 0
    assert seen["stderr before the run"].splitlines() == [
        "warning: untested on a card: the seed ran Wormhole with BFLOAT8_B-SHARDED at batch 2-8 only"]
    assert seen["watcher"] and int(seen["watcher"]) > 0  # set before ttnn would have opened the card
    monkeypatch.delenv("TT_METAL_WATCHER")
    code = cli.main(["demo", "--device", "tt", "--model", "tiny", "--config", "BFLOAT8_B-SHARDED", "--batch", "2",
                     "--input", str(path), "--json"])
    assert code == 0 and seen["stderr before the run"] == "" and seen["watcher"] is None
    assert json.loads(capsys.readouterr().out)["warnings"] == []


def test_watcher_off_tt_is_refused_in_one_line(capsys):
    assert cli.main(["demo", "--watcher", "--model", "tiny", "--config", "FLOAT32"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--watcher applies to --device tt, not --device cpu" in err
