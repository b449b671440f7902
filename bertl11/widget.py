"""An ipywidgets question-answering app: a context, a question, a model and config, the answer highlighted.

The logic (`QAApp.ask`, `highlight`) is plain Python and unit-tested; `build_app` only wires widgets to it.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field

from .config import DEFAULT_RUN_CONFIG, RUN_CONFIGS
from .demo import PACKAGED_INPUT
from .errors import UserError
from .sources import OFFLINE_DEFAULT, OFFLINE_MODELS


def presets(count: int = 4) -> dict[str, str]:
    """A few passages of held-out SQuAD v2 dev articles (the demo input) to start from, named by their first words."""
    inputs = json.loads(PACKAGED_INPUT.read_text())[:count]
    return {" ".join(item["context"].split()[:4]) + "...": item["context"] for item in inputs}


def highlight(context: str, start: int, end: int) -> str:
    """The context as HTML with context[start:end] marked; nothing marked for an empty span."""
    if not 0 <= start <= end <= len(context):
        raise ValueError(f"span {start}:{end} is outside a context of {len(context)} characters")
    before, answer, after = (html.escape(part) for part in (context[:start], context[start:end], context[end:]))
    marked = f'<mark style="background:#ffd54f">{answer}</mark>' if answer else ""
    return f'<div style="line-height:1.5">{before}{marked}{after}</div>'


@dataclass
class AppAnswer:
    text: str
    score: float
    seconds: float
    html: str

    @property
    def summary(self) -> str:
        shown = self.text if self.text else "no answer"
        return f"<b>{html.escape(shown)}</b> &nbsp; score {self.score:.3f} &nbsp; {self.seconds * 1000:.0f} ms"


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

    def ask(self, context: str, question: str, model: str, config: str = DEFAULT_RUN_CONFIG) -> AppAnswer:
        from .squad.pipeline import run_pipeline
        from .squad.postprocess import SpanSearch

        if not context.strip():
            raise UserError("the context is empty")
        if not question.strip():
            raise UserError("the question is empty")
        qa = self.model(model, config)
        run = run_pipeline(qa, [question], [context], batch_size=1, search=SpanSearch(handle_impossible_answer=True))
        (result,) = run.answers
        return AppAnswer(result.text, result.score, sum(run.seconds.values()), highlight(context, result.start, result.end))


def build_app(app: QAApp | None = None, model_choices=None, default_model: str = OFFLINE_DEFAULT):
    """The ipywidgets UI: preset passages, a context box, a question box, model/config dropdowns, Ask."""
    import ipywidgets as w

    app = app or QAApp()
    choices = presets()
    preset = w.Dropdown(options=list(choices), description="Passage")
    context = w.Textarea(value=choices[preset.value], layout=w.Layout(width="100%", height="140px"))
    question = w.Text(value="", placeholder="Ask a question about the passage", layout=w.Layout(width="100%"))
    model = w.Dropdown(options=list(model_choices or OFFLINE_MODELS), value=default_model, description="Model")
    config = w.Dropdown(options=list(RUN_CONFIGS), value=DEFAULT_RUN_CONFIG, description="Config")
    ask = w.Button(description="Ask", button_style="primary")
    summary, shown = w.HTML(), w.HTML()

    def on_preset(change):
        context.value = choices[change["new"]]

    def on_ask(_button=None):
        try:
            result = app.ask(context.value, question.value, model.value, config.value)
        except UserError as error:
            summary.value, shown.value = f"<span style='color:#c62828'>{html.escape(str(error))}</span>", ""
            return
        summary.value, shown.value = result.summary, result.html

    preset.observe(on_preset, names="value")
    ask.on_click(on_ask)
    ui = w.VBox([preset, context, question, w.HBox([model, config, ask]), summary, shown])
    ui.controls = {"preset": preset, "context": context, "question": question, "model": model, "config": config,
                   "ask": ask, "summary": summary, "shown": shown}
    return ui
