# Two commands for learners and CI (see README):
#   make lab    set up the environment (once) and open the course in JupyterLab
#   make test   set up the environment (once) and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.course-installed
PYTEST_ARGS ?=
# JupyterLab refuses to run as root unless told to (containers, CI machines).
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: setup lab test release grade doctor clean

setup: $(STAMP)

# Re-runs only when pyproject.toml (the one list of pins) changes.
$(STAMP): pyproject.toml
	@$(PYTHON) -m course_utils doctor --prereqs
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e .
	touch $(STAMP)

# JupyterLab listens on 127.0.0.1 only; its terminals find torchserve & co. on PATH.
lab: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/jupyter lab --ip 127.0.0.1 --ServerApp.root_dir="$(CURDIR)" $(ALLOW_ROOT)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

release: setup
	$(PY) -m course_utils release

grade: setup
	$(PY) -m course_utils grade exercises/

doctor: setup
	$(PY) -m course_utils doctor

clean:
	rm -rf work/ .pytest_cache
