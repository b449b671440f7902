# The set-up commands of the README:
#   make test       install everything into .venv (+ the reference and ttnn contract environments) and run all tests
#   make test-fast  install into .venv and run what a change needs checked in minutes: no slow, browser or contract tests
#   make demo       install into .venv and answer the 12 packaged questions (DEMO_ARGS="--model minilm-squad2 ...")
#   make app        install into .venv and serve the QA app at http://127.0.0.1:8866/ (APP_ARGS="--port 9000 ...")
#
# TORCH pins torch so pip takes the local CPU wheel instead of resolving a multi-GB CUDA build.
PYTHON ?= python3
PYTHON_TT ?= $(shell PYENV_VERSION=3.12.1 command -v python3.12 2>/dev/null || echo python3.12)
TORCH ?= torch==2.13.0
VENV := .venv
PIP_QUIET := -q --disable-pip-version-check
PYTEST_ARGS ?=
APP_ARGS ?=
DEMO_ARGS ?=

.PHONY: test test-fast demo app install clean-venvs

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_QUIET) "$(TORCH)"
	$(VENV)/bin/pip install $(PIP_QUIET) -e ".[test,notebooks,bench,app]"
	touch $@

# transformers 4.57 still has pipeline("question-answering"): tests compare our answers with it.
.venv-ref/.installed: tests/reference/requirements.txt
	$(PYTHON) -m venv .venv-ref
	.venv-ref/bin/pip install $(PIP_QUIET) "$(TORCH)" -r tests/reference/requirements.txt
	touch $@

# ttnn only ships Python 3.10/3.12 wheels; no torch here (3.12 torch is CUDA-only on these machines).
.venv-tt/.installed: tests/contract/requirements.txt
	PYENV_VERSION=3.12.1 $(PYTHON_TT) -m venv .venv-tt
	.venv-tt/bin/pip install $(PIP_QUIET) -r tests/contract/requirements.txt
	touch $@

install: $(VENV)/.installed

test: $(VENV)/.installed .venv-ref/.installed .venv-tt/.installed
	$(VENV)/bin/python -m pytest -n 2 --dist loadfile --nbval --nbval-current-env $(PYTEST_ARGS)

test-fast: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -n 2 --dist loadfile --nbval --nbval-current-env -m "not slow and not browser" \
		--ignore=tests/contract $(PYTEST_ARGS)

demo: $(VENV)/.installed
	$(VENV)/bin/bertl11 demo $(DEMO_ARGS)

app: $(VENV)/.installed
	$(VENV)/bin/bertl11 app $(APP_ARGS)

clean-venvs:
	rm -rf $(VENV) .venv-ref .venv-tt
