"""The QA widget's logic, and the widgets wired to it (driven by clicking, as a reader would)."""

import html
import json
import re

import pytest

from bertl11.demo import PACKAGED_INPUT
from bertl11.errors import UserError
from bertl11.squad.pipeline import answer
from bertl11.widget import QAApp, build_app, highlight, presets


def test_highlight_marks_exactly_the_span_and_escapes():
    context = "Fish & <chips> are sold in London."
    marked = highlight(context, 0, 4)
    assert "<mark" in marked and ">Fish</mark>" in marked
    assert "&amp; &lt;chips&gt;" in marked
    plain = html.unescape(marked.replace('<mark style="background:#ffd54f">', "").replace("</mark>", ""))
    assert context in plain
    assert "<mark" not in highlight(context, 0, 0)
    with pytest.raises(ValueError):
        highlight(context, 5, 100)


@pytest.fixture(scope="module")
def app():
    return QAApp()


def test_ask_agrees_with_the_squad_pipeline(app):
    item = json.loads(PACKAGED_INPUT.read_text())[0]
    got = app.ask(item["context"], item["question"], "tiny", "FLOAT32")
    (expected,) = answer(app.model("tiny", "FLOAT32"), [item["question"]], [item["context"]], batch_size=1,
                         handle_impossible_answer=True)
    assert got.text == expected.text and got.score == pytest.approx(expected.score)
    if got.text:
        assert f">{html.escape(got.text)}</mark>" in got.html
    assert app.model("tiny", "FLOAT32") is app.model("tiny", "FLOAT32"), "models are loaded once per (model, config)"


def test_ask_refuses_empty_input(app):
    with pytest.raises(UserError, match="question is empty"):
        app.ask("Some context.", "  ", "tiny", "FLOAT32")
    with pytest.raises(UserError, match="context is empty"):
        app.ask("", "Why?", "tiny", "FLOAT32")


def test_clicking_ask_shows_the_answer_and_errors(app):
    ui = build_app(app, model_choices=["tiny"], default_model="tiny")
    c = ui.controls
    c["config"].value = "FLOAT32"
    assert c["context"].value == next(iter(presets().values()))
    second = list(presets())[1]
    c["preset"].value = second
    assert c["context"].value == presets()[second]
    c["question"].value = ""
    c["ask"].click()
    assert "question is empty" in c["summary"].value and c["shown"].value == ""
    c["question"].value = "What is it about?"
    c["ask"].click()
    assert "score" in c["summary"].value and "ms" in c["summary"].value
    assert html.unescape(re.sub(r"<[^>]+>", "", c["shown"].value)) == c["context"].value, "the whole context is shown"
