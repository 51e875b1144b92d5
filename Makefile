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

# Which build of torch 2.13.0 to install (README, "Which torch"). One variable decides:
#   cpu    PyTorch's CPU wheel index: about 190 MB. The default without an NVIDIA GPU.
#   cu126  PyTorch's CUDA 12.6 index: torch plus NVIDIA's CUDA 12 libraries, several GB.
#          The default where `nvidia-smi -L` lists a GPU.
#   pip    whatever pip is configured to serve (a local mirror, as on the course's CI machines).
# Example: make setup TORCH_BUILD=cpu
TORCH_BUILD ?= $(if $(shell nvidia-smi -L 2>/dev/null | grep '^GPU '),cu126,cpu)
TORCH_INDEX_cpu   := --index-url https://download.pytorch.org/whl/cpu
TORCH_INDEX_cu126 := --index-url https://download.pytorch.org/whl/cu126
TORCH_INDEX_pip   :=
TORCH_VERSION := $(shell sed -n 's/^torch==\([0-9.]*\).*/\1/p' requirements.lock)

# `make lock` resolves pyproject.toml (with torch's CPU build) into requirements.lock.
# Candidates newer than LOCK_DATE are ignored and the old lock is not consulted (--upgrade),
# so the same inputs give the same lock.
LOCK_DATE  ?= 2026-12-01T00:00:00Z
LOCK_TORCH ?= --torch-backend cpu
LOCK_OUTPUT ?= requirements.lock

.PHONY: setup lab test test-fast release grade grade-submissions doctor lock lock-check models reset-exercise clean aiperf aiperf-lock model-analyzer model-analyzer-lock kserve kserve-lock

setup: $(STAMP)

# Re-runs only when the lock changes. torch comes first, from the index TORCH_BUILD names;
# then every other package at the version the lock gives; then the course itself, no deps.
$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -m course_utils doctor --prereqs
	@test -n "$(filter $(TORCH_BUILD),cpu cu126 pip)" || { echo "TORCH_BUILD=$(TORCH_BUILD): use cpu, cu126 or pip"; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(strip $(TORCH_INDEX_$(TORCH_BUILD)) torch==$(TORCH_VERSION))
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

lock: setup
	$(VENV)/bin/uv pip compile pyproject.toml --quiet --python-version 3.11 \
	    --python-platform x86_64-manylinux_2_35 --exclude-newer $(LOCK_DATE) $(LOCK_TORCH) \
	    --upgrade --custom-compile-command "make lock" -o $(LOCK_OUTPUT)
	@# The lock pins torch's version, not its build: pip accepts 2.13.0+cpu and the CUDA builds.
	sed -i -E 's/^(torch==[0-9.]+)\+[a-z0-9]+$$/\1/' $(LOCK_OUTPUT)

# Course authors, with network: does `make lock` still write requirements.lock to the byte, and is every
# GPU extra still published? Both answers depend on what the index serves today, so `make test` never asks.
lock-check: setup
	$(MAKE) -s lock LOCK_OUTPUT=$(VENV)/lock-check.txt
	diff -u requirements.lock $(VENV)/lock-check.txt && echo "requirements.lock is what make lock writes today"
	$(PY) -m course_utils.machinery.index_checks

# Optional: NVIDIA AIPerf (lesson 16) in an environment of its own, from its own lock (about 1.2 GB,
# two minutes). make test never needs it; lessons that can use it say so when it is missing.
override AIPERF_VENV := .venv-aiperf
aiperf: $(AIPERF_VENV)/.installed

# Made with the course's own interpreter (Python 3.11, which the lock's wheels need).
$(AIPERF_VENV)/.installed: tools/aiperf.lock | setup
	test -x $(AIPERF_VENV)/bin/python || $(PY) -m venv $(AIPERF_VENV)
	$(AIPERF_VENV)/bin/python -m pip install --quiet --require-hashes -r tools/aiperf.lock
	$(AIPERF_VENV)/bin/aiperf --version
	touch $@

aiperf-lock: setup
	$(VENV)/bin/uv pip compile tools/aiperf.in --quiet --python-version 3.11 --generate-hashes \
	    --python-platform x86_64-manylinux_2_35 --exclude-newer $(LOCK_DATE) \
	    --upgrade --custom-compile-command "make aiperf-lock" -o tools/aiperf.lock

# Model Analyzer (lesson 21, optional), the same way: its own environment from its own lock.
override MA_VENV := .venv-model-analyzer
model-analyzer: $(MA_VENV)/.installed

$(MA_VENV)/.installed: tools/model-analyzer.lock | setup
	test -x $(MA_VENV)/bin/python || $(PY) -m venv $(MA_VENV)
	$(MA_VENV)/bin/python -m pip install --quiet --require-hashes -r tools/model-analyzer.lock
	$(MA_VENV)/bin/model-analyzer --version
	touch $@

model-analyzer-lock: setup
	$(VENV)/bin/uv pip compile tools/model-analyzer.in --quiet --python-version 3.11 --generate-hashes \
	    --python-platform x86_64-manylinux_2_35 --exclude-newer $(LOCK_DATE) \
	    --upgrade --custom-compile-command "make model-analyzer-lock" -o tools/model-analyzer.lock
	@# Model Analyzer asks for tritonclient[all]: pip's --require-hashes wants that extra on the pinned line.
	sed -i -E 's/^tritonclient==/tritonclient[all]==/' tools/model-analyzer.lock

# The KServe SDK (lesson 10's manifests, checked against its InferenceService schema), the same way: its own
# environment from its own lock (about 450 MB, a minute). make test skips that check without it; CI installs it.
override KSERVE_VENV := .venv-kserve
kserve: $(KSERVE_VENV)/.installed

$(KSERVE_VENV)/.installed: tools/kserve.lock | setup
	test -x $(KSERVE_VENV)/bin/python || $(PY) -m venv $(KSERVE_VENV)
	$(KSERVE_VENV)/bin/python -m pip install --quiet --require-hashes -r tools/kserve.lock
	$(KSERVE_VENV)/bin/python -c "import kserve; print('kserve SDK installed:', kserve.V1beta1InferenceService.__name__)"
	touch $@

kserve-lock: setup
	$(VENV)/bin/uv pip compile tools/kserve.in --quiet --python-version 3.11 --generate-hashes \
	    --python-platform x86_64-manylinux_2_35 --exclude-newer $(LOCK_DATE) \
	    --upgrade --custom-compile-command "make kserve-lock" -o tools/kserve.lock

# Course authors: retrain the weights the course ships (course_utils/weights/) on the AVX2 code path.
models: setup
	$(PY) -m course_utils train-models

# JupyterLab listens on 127.0.0.1 only and opens on lesson 00; its terminals find torchserve
# & co. on PATH. Ctrl+C twice stops it cleanly: `exec` replaces the recipe's shell with jupyter,
# so only JupyterLab handles the interrupt (no "make: *** Interrupt").
lab: setup
	@exec env PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/jupyter lab --ip 127.0.0.1 \
	    --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/notebooks/00_setup.ipynb $(ALLOW_ROOT)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

# Unit tests only: no server, no notebook (a test that starts one fails and asks for the slow mark).
test-fast: setup
	$(PY) -m pytest tests -m "not slow" $(PYTEST_ARGS)

release: setup
	$(PY) -m course_utils release

# Put one exercise back to its original student copy (your answers in it are lost):
#   make reset-exercise EX=ex01
reset-exercise: setup
	@test -n "$(EX)" || { echo "name the exercise: make reset-exercise EX=ex01"; exit 2; }
	$(PY) -m course_utils reset-exercise $(EX)

grade: setup
	$(PY) -m course_utils grade exercises/

# Instructors: grade a folder of submissions (one folder per learner) into graded/:
#   make grade-submissions DIR=submissions
grade-submissions: setup
	@test -n "$(DIR)" || { echo "name the folder: make grade-submissions DIR=submissions"; exit 2; }
	$(PY) -m course_utils grade-submissions $(DIR) --out graded

doctor: setup
	$(PY) -m course_utils doctor

clean:
	rm -rf work/ .pytest_cache
