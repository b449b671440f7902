"""The ipywidgets question-answering app: a passage, a question, a model and config, the top answers highlighted.

`QAApp.ask` (plain Python) answers through the one SQuAD pipeline; `QAPage` wires widgets to it. `bertl11 app`
serves the page with Voila (`bertl11.app`), notebook 05 shows it inline, and the tests click it both from Python and
in Chromium. A page shows every error as a line in the page, never a traceback; it answers in a thread so that it
stays live (the progress bar moves) and a click while it is answering is ignored instead of queued.
"""

from __future__ import annotations

import html
import threading
import time
import unicodedata
from dataclasses import dataclass, field

from .config import DEFAULT_RUN_CONFIG
from .errors import UserError
from .packaged import demo_input
from .sources import OFFLINE_DEFAULT, OFFLINE_MODELS

# The switch's choices: the exact reference, the bfloat16 card config, and the seed's fastest.
SWITCH_CONFIGS = ("FLOAT32", "BFLOAT16-DRAM", "BFLOAT8_B-SHARDED")
APP_BATCH = 8  # windows per model call: a long context makes many
MAX_TOP_K = 5
SNIPPET_CHARS = 40  # context shown either side of an answer in the answers table
ALLOWED_CONTROLS = "\t\n\r"
MARK = '<mark style="background:#ffd54f">'


def presets() -> dict[str, str]:
    """The passages of the held-out articles (the packaged demo input, `squad.split`), named by their first words."""
    contexts = dict.fromkeys(item["context"] for item in demo_input())
    return {" ".join(context.split()[:4]) + "...": context for context in contexts}


def check_text(what: str, text: str) -> str:
    """`text`, or a one-line `UserError` when it is blank or holds a control character (tab and newlines aside)."""
    if not text.strip():
        raise UserError(f"the {what} is empty")
    for position, char in enumerate(text):
        if unicodedata.category(char) == "Cc" and char not in ALLOWED_CONTROLS:
            raise UserError(f"the {what} holds the control character U+{ord(char):04X} at character {position}; "
                            "remove it and ask again")
    return text


def highlight(context: str, start: int, end: int) -> str:
    """context as HTML with context[start:end] marked; nothing marked for an empty span."""
    if not 0 <= start <= end <= len(context):
        raise ValueError(f"span {start}:{end} is outside a context of {len(context)} characters")
    before, answer, after = (html.escape(part) for part in (context[:start], context[start:end], context[end:]))
    marked = f"{MARK}{answer}</mark>" if answer else ""
    return f"{before}{marked}{after}"


def snippet(context: str, start: int, end: int, width: int = SNIPPET_CHARS) -> str:
    """The answer marked in `width` characters of context either side, as HTML."""
    first, last = max(0, start - width), min(len(context), end + width)
    inner = highlight(context[first:last], start - first, end - first)
    return ("..." if first else "") + inner + ("..." if last < len(context) else "")


@dataclass
class AppResult:
    """One config's answers to a question: best first, text "" meaning "no answer"."""

    config: str
    answers: list
    seconds: float
    windows: int


@dataclass
class QAApp:
    """Answers questions, keeping each (model, config) loaded after its first use."""

    device: str = "cpu"
    models: dict = field(default_factory=dict)

    def model(self, name: str, config: str):
        from .runtime import QAModel

        key = (name, config)
        if key not in self.models:
            self.models[key] = QAModel.load(name, config=config, device=self.device)
        return self.models[key]

    def ask(self, context: str, question: str, model: str, config: str = DEFAULT_RUN_CONFIG, top_k: int = 1,
            on_batch=None) -> AppResult:
        """The top_k answers, as `squad.answer(..., batch_size=APP_BATCH, handle_impossible_answer=True)` gives them.

        on_batch: called with (windows done, windows in all) while the model runs."""
        from .squad.pipeline import run_pipeline
        from .squad.postprocess import SpanSearch

        check_text("context", context)
        check_text("question", question)
        qa = self.model(model, config)
        started = time.perf_counter()
        run = run_pipeline(qa, [question], [context], batch_size=APP_BATCH, on_batch=on_batch,
                           search=SpanSearch(top_k=top_k, handle_impossible_answer=True))
        (best,) = run.answers
        return AppResult(config, [best, *best.alternatives], time.perf_counter() - started, len(run.windows))


def answer_rows(result: AppResult, context: str, other: AppResult | None = None) -> str:
    """One config's answers as an HTML table; with `other`, ranks whose answer differs from other's are marked."""
    rows = []
    for rank, answer in enumerate(result.answers, 1):
        theirs = other.answers[rank - 1].text if other and rank <= len(other.answers) else None
        differs = other is not None and answer.text != theirs
        text = html.escape(answer.text) if answer.text else "<i>no answer</i>"
        shown = snippet(context, answer.start, answer.end) if answer.text else ""
        mark = '<span class="bertl11-differs" style="color:#c62828" title="differs">&ne;</span>' if differs else ""
        rows.append(f'<tr data-rank="{rank}"{" data-differs" if differs else ""}><td>{rank}</td>'
                    f'<td class="bertl11-text"><b>{text}</b></td><td>{mark}</td><td class="bertl11-score">{answer.score:.3f}</td>'
                    f'<td style="color:#555">{shown}</td></tr>')
    windows = f"{result.windows} window{'s' if result.windows != 1 else ''}"
    return (f'<div class="bertl11-config" data-config="{result.config}" style="flex:1;min-width:0">'
            f'<div><b>{result.config}</b> &nbsp; <span class="bertl11-time">{result.seconds * 1000:.0f} ms</span>'
            f' &nbsp; <span class="bertl11-windows">{windows}</span></div>'
            f'<table class="bertl11-answers"><tr><th>#</th><th>answer</th><th></th><th>score</th><th>in the passage</th></tr>'
            f'{"".join(rows)}</table></div>')


def render(results: list[AppResult], context: str, run: int) -> str:
    """The answers of one or two configs, side by side, and the passage with the first config's best answer."""
    first, *rest = results
    columns = [answer_rows(first, context, rest[0] if rest else None)]
    columns += [answer_rows(result, context, first) for result in rest]
    agreement = ""
    if rest:
        same = [a.text for a in first.answers] == [a.text for a in rest[0].answers]
        agreement = (f'<p class="bertl11-agreement">{"the configs agree on every answer" if same else "the configs differ where marked &ne;"}'
                     "</p>")
    best = first.answers[0]
    passage = highlight(context, best.start, best.end)
    return (f'<div class="bertl11-result" data-run="{run}"><div style="display:flex;gap:24px">{"".join(columns)}</div>'
            f'{agreement}<div class="bertl11-passage" style="line-height:1.5;max-height:240px;overflow:auto;'
            f'white-space:pre-wrap">{passage}</div></div>')


def render_error(message: str, run: int) -> str:
    return f'<div class="bertl11-error" data-run="{run}" style="color:#c62828">{html.escape(message)}</div>'


class QAPage:
    """The app's widgets wired to a `QAApp`. Display it (or `.ui`); `wait()` until an answer is shown.

    Each finished question or failure bumps `runs`, which the result carries as data-run for the browser test."""

    def __init__(self, app: QAApp | None = None, model_choices=None, default_model: str = OFFLINE_DEFAULT,
                 default_config: str = DEFAULT_RUN_CONFIG):
        import ipywidgets as w

        self.app = app or QAApp()
        self.choices = presets()
        configs = list(dict.fromkeys([*SWITCH_CONFIGS, default_config]))
        models = list(dict.fromkeys([default_model, *(model_choices or OFFLINE_MODELS)]))
        self.preset = w.Dropdown(options=list(self.choices), description="Passage", layout=w.Layout(width="100%"))
        self.context = w.Textarea(value=self.choices[self.preset.value], placeholder="Paste a passage",
                                  layout=w.Layout(width="100%", height="160px"))
        self.question = w.Text(placeholder="Ask a question about the passage", layout=w.Layout(width="100%"))
        self.model = w.Dropdown(options=models, value=default_model, description="Model")
        wide = {"button_width": "170px"}  # the longest config name in full
        self.config = w.ToggleButtons(options=configs, value=default_config, description="Config", style=wide)
        self.side_by_side = w.Checkbox(value=False, description="side by side with", indent=False,
                                       layout=w.Layout(width="auto"))
        self.other_config = w.ToggleButtons(options=configs, value="FLOAT32", disabled=True, style=wide)
        self.top_k = w.BoundedIntText(value=3, min=1, max=MAX_TOP_K, description="Top k", layout=w.Layout(width="140px"))
        self.button = w.Button(description="Answer", button_style="primary", icon="question")
        self.status = w.HTML()
        self.progress = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(visibility="hidden"))
        self.result = w.HTML()
        for widget, name in [(self.context, "context"), (self.question, "question"), (self.config, "config"),
                             (self.side_by_side, "side-by-side"), (self.other_config, "other-config"),
                             (self.top_k, "top-k"), (self.button, "answer"), (self.status, "status"),
                             (self.progress, "progress"), (self.result, "result-box"), (self.model, "model")]:
            widget.add_class(f"bertl11-{name}")
        self.preset.observe(lambda change: setattr(self.context, "value", self.choices[change["new"]]), names="value")
        self.side_by_side.observe(lambda change: setattr(self.other_config, "disabled", not change["new"]), names="value")
        self.button.on_click(self.on_answer)
        title = w.HTML("<h3 style='margin:0'>bertl11 &middot; ask BERT a question (SQuAD v2)</h3>")
        self.ui = w.VBox([title, self.preset, self.context, self.question, w.HBox([self.model, self.top_k]), self.config,
                          w.HBox([self.side_by_side, self.other_config]),
                          w.HBox([self.button, self.progress, self.status]), self.result])
        self.runs = 0
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    def _repr_mimebundle_(self, **kwargs):
        return self.ui._repr_mimebundle_(**kwargs)

    @property
    def busy(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def wait(self, timeout: float | None = None) -> None:
        """Until the answer (or model load) in flight is shown."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
            if worker.is_alive():
                raise TimeoutError(f"no answer within {timeout} s")

    def load(self) -> None:
        """Load the chosen model and config now (in the background), so the first question does not wait for it."""
        self._start(self._load, self.model.value, self.config.value)

    def on_answer(self, _button=None) -> None:
        configs = [self.config.value]
        if self.side_by_side.value and self.other_config.value != self.config.value:
            configs.append(self.other_config.value)
        self._start(self._answer, self.context.value, self.question.value, self.model.value, configs, self.top_k.value)

    def _start(self, work, *args) -> None:
        with self._lock:
            if self.busy:  # a click while answering: ignored, not queued
                return
            self.button.disabled = True
            self._worker = threading.Thread(target=self._run, args=(work, *args), daemon=True)
            self._worker.start()

    def _run(self, work, *args) -> None:
        try:
            work(*args)
        except Exception as error:  # a page has nowhere to show a traceback: one line, like the CLI's errors
            message = str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
            self.runs += 1
            self.status.value, self.result.value = "", render_error(message, self.runs)
        finally:
            self.progress.layout.visibility = "hidden"
            self.button.disabled = False

    def _load(self, model: str, config: str) -> None:
        self.status.value = f"loading {html.escape(model)} ({config})..."
        self.app.model(model, config)
        self.status.value = f"{html.escape(model)} ({config}) ready"

    def _show_progress(self, done: int, total: int) -> None:
        self.progress.max, self.progress.value = max(total, 1), done
        self.progress.layout.visibility = "visible" if total > APP_BATCH else "hidden"
        self.status.value = f"windows {done}/{total}"

    def _answer(self, context: str, question: str, model: str, configs: list[str], top_k: int) -> None:
        results = []
        for config in configs:
            self.status.value = f"answering with {html.escape(model)} ({config})..."
            results.append(self.app.ask(context, question, model, config, top_k, on_batch=self._show_progress))
        self.runs += 1
        self.status.value = ""
        self.result.value = render(results, context, self.runs)

