"""`bertl11 app`: its one-line errors, and the page in headless Chromium, used the way a person uses it: type, click
Answer, read the page.

The server is the real command on a free port of 127.0.0.1; the browser is Debian's chromium driven by Playwright
(its own browser download is not available here; `.ci/run` installs chromium). What the page shows must equal
`bertl11.squad.answer` on the same inputs, computed here in the test's own process. Every wait has a bound, the
server is stopped whatever happens, and the last page is saved as out/app/qa_app.png (the screenshot in the README
and notebook 05 is that file).
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from playwright.sync_api import expect, sync_playwright

from bertl11.packaged import DEMO_INPUT
from bertl11.runtime import QAModel
from bertl11.squad.pipeline import answer
from bertl11.widget import APP_BATCH

from conftest import REPO, assert_user_error, run_main

MODEL = "minilm-squad2"  # `bertl11 app`'s default: the fine-tuned model that ships in the package
ARTIFACTS = REPO / "out" / "app"
SCREENSHOT = ARTIFACTS / "qa_app.png"
SERVER_START_S = 60  # until the port answers
PAGE_READY_S = 180  # page load, kernel start, imports and the first model load
ANSWER_S = 120  # one question in two configs on a slow CPU
STOP_S = 20



def test_bad_options_are_one_line_errors(capsys):
    """In process: each is refused before the server would replace the process."""
    assert_user_error(run_main(capsys, "app", "--model", "no-such-model", "--no-browser"), "unknown model 'no-such-model'")
    assert_user_error(run_main(capsys, "app", "--config", "FLOAT64", "--no-browser"), "FLOAT64")
    assert_user_error(run_main(capsys, "app", "--port", "0", "--no-browser"), "--port")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_user_error(run_main(capsys, "app", "--port", str(port), "--no-browser"), f"127.0.0.1:{port}", "--port")


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs it with apt-get install chromium")
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_served(address, server: subprocess.Popen, log) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"bertl11 app exited with {server.returncode}: {log.read_text()}")
        try:  # the port, not a page: each page request starts a kernel
            socket.create_connection(address, timeout=5).close()
            return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"bertl11 app did not listen on {address} within {SERVER_START_S} s: {log.read_text()}")


def stop(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (Voila shuts its kernels down on it), SIGKILL if it lingers."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(STOP_S)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(STOP_S)


@pytest.fixture(scope="module")
def page():
    executable = chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = ARTIFACTS / "server.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with open(log, "w") as output:
        server = subprocess.Popen([sys.executable, "-m", "bertl11.cli", "app", "--port", str(port), "--no-browser",
                                   "--model", MODEL], stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  start_new_session=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        wait_until_served(("127.0.0.1", port), server, log)
        with sync_playwright() as driver:
            # Playwright starts chromium without its sandbox by default, which is what lets it run as root (CI).
            browser = driver.chromium.launch(executable_path=executable, headless=True, timeout=60_000)
            try:
                tab = browser.new_page(viewport={"width": 1100, "height": 900})
                tab.set_default_timeout(ANSWER_S * 1000)
                tab.goto(url, timeout=PAGE_READY_S * 1000)
                expect(tab.locator(".bertl11-status")).to_contain_text("ready", timeout=PAGE_READY_S * 1000)
                expect(tab.locator("button.bertl11-answer")).to_be_enabled()
                yield tab
            finally:
                browser.close()
    finally:
        stop(server)


@pytest.fixture(scope="module")
def models():
    loaded = {}

    def model(config):
        if config not in loaded:
            loaded[config] = QAModel.load(MODEL, config)
        return loaded[config]

    return model


def expected(model, context, question, top_k):
    """What the page must show: `squad.answer` with the page's settings, as the rows' texts and scores."""
    (best,) = answer(model, [question], [context], batch_size=APP_BATCH, top_k=top_k, handle_impossible_answer=True)
    return [(" ".join(a.text.split()) or "no answer", a.score) for a in (best, *best.alternatives)]


def runs_shown(tab) -> int:
    return int(tab.locator("[data-run]").get_attribute("data-run") or 0) if tab.locator("[data-run]").count() else 0


def click_answer(tab, click="click"):
    """Press Answer and wait for the next result (an answer or an error); that result's locator."""
    before = runs_shown(tab)
    getattr(tab.locator("button.bertl11-answer"), click)()
    tab.wait_for_function("before => Number(document.querySelector('[data-run]')?.dataset.run || 0) > before",
                          arg=before, timeout=ANSWER_S * 1000)
    return tab.locator("[data-run]")


def rows(result, config):
    table = result.locator(f'.bertl11-config[data-config="{config}"] tr[data-rank]')
    return [(row.locator(".bertl11-text").inner_text().strip(), float(row.locator(".bertl11-score").inner_text()),
             row.get_attribute("data-differs") is not None) for row in table.all()]


def assert_rows_match(shown, wanted):
    assert [text for text, _, _ in shown] == [text for text, _ in wanted]
    for (_, score, _), (_, want) in zip(shown, wanted):
        assert score == pytest.approx(want, abs=0.0015), "scores are shown to 3 decimals"


def ask(tab, context, question, config, top_k, other=None):
    tab.fill(".bertl11-context textarea", context)
    tab.fill(".bertl11-question input", question)
    tab.fill(".bertl11-top-k input", str(top_k))
    tab.locator(".bertl11-top-k input").press("Enter")
    tab.locator(".bertl11-config button", has_text=config).click()
    checkbox = tab.locator(".bertl11-side-by-side input")
    if checkbox.is_checked() != (other is not None):
        checkbox.click()
    if other is not None:
        tab.locator(".bertl11-other-config button", has_text=other).click()
    return click_answer(tab)


def packaged(index):
    import json

    item = json.loads(DEMO_INPUT.read_text())[index]
    return item["context"], item["question"]


@pytest.mark.browser
def test_typed_question_gets_the_pipelines_answers(page, models):
    context, question = packaged(2)  # a held-out article, typed in as free text
    result = ask(page, context, question, "FLOAT32", 3)
    wanted = expected(models("FLOAT32"), context, question, 3)
    assert_rows_match(rows(result, "FLOAT32"), wanted)
    assert wanted[0][0] != "no answer", "this question has an answer in the passage"
    assert page.locator(".bertl11-passage mark").first.inner_text() == wanted[0][0]
    assert result.locator(".bertl11-windows").inner_text() == "1 window"


@pytest.mark.browser
def test_an_empty_question_is_a_line_in_the_page(page):
    context, _ = packaged(0)
    result = ask(page, context, "   ", "FLOAT32", 1)
    assert result.get_attribute("class") == "bertl11-error"
    assert result.inner_text() == "the question is empty"
    assert "Traceback" not in page.content()


@pytest.mark.browser
def test_side_by_side_marks_where_the_configs_differ(page, models):
    context, question = packaged(0)
    result = ask(page, context, question, "BFLOAT8_B-SHARDED", 3, other="FLOAT32")
    first = expected(models("BFLOAT8_B-SHARDED"), context, question, 3)
    second = expected(models("FLOAT32"), context, question, 3)
    shown_first, shown_second = rows(result, "BFLOAT8_B-SHARDED"), rows(result, "FLOAT32")
    assert_rows_match(shown_first, first)
    assert_rows_match(shown_second, second)
    differs = [i < len(second) and a[0] != second[i][0] for i, a in enumerate(first)]
    assert [d for _, _, d in shown_first] == differs, "a rank is marked exactly where the two configs disagree"
    page.screenshot(path=str(SCREENSHOT), full_page=True)


@pytest.mark.browser
def test_a_second_click_while_answering_is_ignored(page):
    started = time.monotonic()
    before = runs_shown(page)
    click_answer(page, click="dblclick")
    took = time.monotonic() - started
    expect(page.locator("button.bertl11-answer")).to_be_enabled()
    time.sleep(max(2.0, took))  # a queued second run would have finished by now
    assert runs_shown(page) == before + 1
