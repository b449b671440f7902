"""The QA app's logic, and its widgets driven by clicking from Python (tests/test_app_browser.py clicks it in Chromium)."""

import html
import json
import re
import threading

import pytest

from bertl11.errors import UserError
from bertl11.packaged import DEMO_INPUT
from bertl11.squad.pipeline import answer
from bertl11.squad.preprocess import encode
from bertl11.widget import APP_BATCH, QAApp, QAPage, check_text, highlight, presets

from conftest import REPO

WAIT_S = 120


def test_highlight_marks_exactly_the_span_and_escapes():
    context = "Fish & <chips> are sold in London."
    marked = highlight(context, 0, 4)
    assert "<mark" in marked and ">Fish</mark>" in marked
    assert "&amp; &lt;chips&gt;" in marked
    assert html.unescape(re.sub(r"<[^>]+>", "", marked)) == context
    assert "<mark" not in highlight(context, 0, 0)
    with pytest.raises(ValueError):
        highlight(context, 5, 100)


def test_check_text_refuses_blank_text_and_control_characters():
    assert check_text("question", "Who?\twhere?\n") == "Who?\twhere?\n"
    with pytest.raises(UserError, match="question is empty"):
        check_text("question", " \n ")
    with pytest.raises(UserError, match=r"context holds the control character U\+0007 at character 3"):
        check_text("context", "abc\adef")


def test_presets_are_the_packaged_held_out_passages():
    contexts = {item["context"] for item in json.loads(DEMO_INPUT.read_text())}
    assert set(presets().values()) == contexts


@pytest.fixture(scope="module")
def app():
    return QAApp()


def test_ask_agrees_with_the_squad_pipeline(app):
    item = json.loads(DEMO_INPUT.read_text())[0]
    got = app.ask(item["context"], item["question"], "tiny", "FLOAT32", top_k=3)
    (best,) = answer(app.model("tiny", "FLOAT32"), [item["question"]], [item["context"]], batch_size=APP_BATCH,
                     top_k=3, handle_impossible_answer=True)
    wanted = [best, *best.alternatives]
    assert [(a.text, a.start) for a in got.answers] == [(a.text, a.start) for a in wanted]
    assert [a.score for a in got.answers] == pytest.approx([a.score for a in wanted])
    assert got.windows == 1 and got.seconds > 0
    assert app.model("tiny", "FLOAT32") is app.model("tiny", "FLOAT32"), "models are loaded once per (model, config)"


def test_ask_refuses_empty_input(app):
    with pytest.raises(UserError, match="question is empty"):
        app.ask("Some context.", "  ", "tiny", "FLOAT32")
    with pytest.raises(UserError, match="context is empty"):
        app.ask("", "Why?", "tiny", "FLOAT32")


@pytest.fixture
def page(app):
    page = QAPage(app, model_choices=["tiny", "no-such-model"], default_model="tiny", default_config="FLOAT32")
    page.top_k.value = 2
    return page


def click(page):
    page.button.click()
    page.wait(WAIT_S)
    return page.result.value


def test_clicking_answer_shows_the_answers_and_errors(page):
    assert page.context.value == next(iter(presets().values()))
    second = list(presets())[1]
    page.preset.value = second
    assert page.context.value == presets()[second]
    page.question.value = ""
    assert "the question is empty" in click(page) and 'data-run="1"' in page.result.value
    page.question.value = "What is it about?"
    shown = click(page)
    assert 'data-run="2"' in shown and 'data-config="FLOAT32"' in shown and "ms" in shown
    assert shown.count('data-rank="') == 2
    passage = re.search(r'class="bertl11-passage"[^>]*>(.*?)</div>', shown, re.S).group(1)
    assert html.unescape(re.sub(r"<[^>]+>", "", passage)) == page.context.value, "the whole passage is shown"
    page.question.value = "Why\x1b?"
    assert "control character U+001B" in click(page)
    assert not page.busy and not page.button.disabled


def test_a_model_that_fails_to_load_is_an_error_in_the_page(page):
    page.model.value = "no-such-model"
    page.question.value = "Who?"
    assert "unknown model 'no-such-model'" in html.unescape(click(page))
    assert "Traceback" not in page.result.value


def test_side_by_side_answers_in_both_configs_and_marks_differences(page):
    page.question.value = "Who were the Normans?"
    page.context.value = next(iter(presets().values()))
    page.side_by_side.value = True
    assert not page.other_config.disabled
    page.other_config.value = "BFLOAT8_B-SHARDED"
    shown = click(page)
    assert 'data-config="FLOAT32"' in shown and 'data-config="BFLOAT8_B-SHARDED"' in shown
    first, second = (page.app.ask(page.context.value, page.question.value, "tiny", c, 2) for c in ("FLOAT32", "BFLOAT8_B-SHARDED"))
    differ = [a.text != b.text for a, b in zip(first.answers, second.answers)]
    assert shown.count("data-differs") == 2 * sum(differ), "each differing rank is marked in both columns"
    assert ("agree on every answer" in shown) == (not any(differ))


class HeldApp(QAApp):
    """Answers only once released, so a test can click while it is answering; counts its questions."""

    def __init__(self):
        super().__init__()
        self.release, self.questions = threading.Event(), 0

    def ask(self, *args, **kwargs):
        self.questions += 1
        assert self.release.wait(WAIT_S)
        return super().ask(*args, **kwargs)


def test_a_second_click_while_answering_is_ignored():
    app = HeldApp()
    page = QAPage(app, model_choices=["tiny"], default_model="tiny", default_config="FLOAT32")
    page.question.value = "What is it about?"
    page.button.click()
    assert page.busy and page.button.disabled
    page.button.click()  # while the first is still answering
    app.release.set()
    page.wait(WAIT_S)
    assert app.questions == 1 and page.runs == 1 and 'data-run="1"' in page.result.value
    assert not page.button.disabled


def test_a_long_context_makes_windows_and_moves_the_progress_bar(page):
    context = " ".join(item["context"] for item in json.loads(DEMO_INPUT.read_text()))
    context = (context + " ") * (200_000 // len(context) + 1)
    page.context.value, page.question.value = context, "What is Southern California often abbreviated as?"
    seen = []
    page.progress.observe(lambda change: seen.append(change["new"]), names="value")
    shown = click(page)
    windows = len(encode(page.app.model("tiny", "FLOAT32").tokenizer, [page.question.value], [context]))
    assert f"{windows} windows" in shown and windows > 100
    assert page.progress.max == windows and seen[-1] == windows and len(seen) >= windows // APP_BATCH


def test_saved_notebook_05_embeds_the_apps_last_state():
    """GitHub and nbviewer draw widgets from the state saved in the notebook: the app's view and its last answer."""
    notebook = json.loads((REPO / "notebooks" / "05_qa_widget.ipynb").read_text())
    state = notebook["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    views = [output["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
             for cell in notebook["cells"] for output in cell.get("outputs", [])
             if "application/vnd.jupyter.widget-view+json" in output.get("data", {})]
    assert views and all(view in state for view in views)
    shown = [model["state"]["value"] for model in state.values() if model["model_name"] == "HTMLModel"]
    assert any('class="bertl11-result"' in value and 'data-config="FLOAT32"' in value for value in shown)
