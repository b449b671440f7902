# The set-up commands of the README:
#   make test       install everything into .venv (+ the reference and ttnn contract environments) and run all tests
#   make test-fast  install into .venv and run what a change needs checked in minutes: no slow, browser or contract tests
#   make demo       install into .venv and answer the 12 packaged questions (DEMO_ARGS="--model minilm-squad2 ...")
#   make app        install into .venv and serve the QA app at http://127.0.0.1:8866/ (APP_ARGS="--port 9000 ...")
#
# PYTHON: the interpreter of .venv and .venv-ref, the first of 3.11, 3.12, 3.10 that can make a venv (pyproject
# allows 3.10-3.12). PYTHON_TT: the contract tier's, 3.12 or 3.10 (ttnn ships wheels for those only). Either may be
# given: make test PYTHON=/usr/bin/python3.10.
# TORCH pins torch; see the README's "Requirements" for the CPU build on machines without a local wheel.
PYTHON ?= $(shell scripts/find-python 3.11 3.12 3.10)
PYTHON_TT ?= $(shell scripts/find-python 3.12 3.10)
TORCH ?= torch==2.13.0
VENV := .venv
PIP_QUIET := -q --disable-pip-version-check
PYTEST_ARGS ?=
APP_ARGS ?=
DEMO_ARGS ?=

.PHONY: test test-fast demo app install clean-venvs python python-tt

# Each stops make in one line, before anything is installed, when its interpreter is missing.
NO_PYTHON := no Python 3.10-3.12 that can make a venv here: install python3.11 (and python3.11-venv on Debian/Ubuntu), or pass PYTHON=/path/to/python3.X
NO_PYTHON_TT := the ttnn contract tier of make test needs Python 3.12 or 3.10 beside the main one (ttnn has no other wheels): install python3.12 and python3.12-venv, or run pyenv install 3.12, or pass PYTHON_TT=/path/to/python3.12; make test-fast runs without it
python:
	$(if $(PYTHON),,$(error $(NO_PYTHON)))

python-tt:
	$(if $(PYTHON_TT),,$(error $(NO_PYTHON_TT)))

$(VENV)/.installed: pyproject.toml | python
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_QUIET) "$(TORCH)"
	$(VENV)/bin/pip install $(PIP_QUIET) -e ".[test,notebooks,bench,app]"
	touch $@

# transformers 4.57 still has pipeline("question-answering"): tests compare our answers with it.
.venv-ref/.installed: tests/reference/requirements.txt | python
	$(PYTHON) -m venv .venv-ref
	.venv-ref/bin/pip install $(PIP_QUIET) "$(TORCH)" -r tests/reference/requirements.txt
	touch $@

# ttnn only ships Python 3.10/3.12 wheels; no torch here (torch for 3.12 means a multi-GB CUDA build on most machines).
.venv-tt/.installed: tests/contract/requirements.txt | python-tt
	$(PYTHON_TT) -m venv .venv-tt
	.venv-tt/bin/pip install $(PIP_QUIET) -r tests/contract/requirements.txt
	touch $@

install: $(VENV)/.installed

test: python python-tt $(VENV)/.installed .venv-ref/.installed .venv-tt/.installed
	$(VENV)/bin/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder --nbval --nbval-current-env $(PYTEST_ARGS)

test-fast: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder --nbval --nbval-current-env -m "not slow and not browser" \
		--ignore=tests/contract $(PYTEST_ARGS)

demo: $(VENV)/.installed
	$(VENV)/bin/bertl11 demo $(DEMO_ARGS)

app: $(VENV)/.installed
	$(VENV)/bin/bertl11 app $(APP_ARGS)

clean-venvs:
	rm -rf $(VENV) .venv-ref .venv-tt
