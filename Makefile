# The two commands of the README: `make run` (the notebook sequence on ml100k) and `make test`.
# Both install what they need into .venv first, from scratch if it is missing.
#
# TORCH: on the course machines torch==2.13.0 is a CPU wheel already on disk. On a GPU machine
# use `make install TORCH=torch` (or any CUDA build) — fatsmb_lib itself only needs torch>=2.1.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
RECBOLE ?= recbole==1.2.1
PY := $(VENV)/bin/python
DATASET ?= ml100k
PROFILE ?= default
DEVICE ?= auto

.PHONY: install run test bench student clean-venv

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install "$(TORCH)"
	$(PY) -m pip install -e .
	# ml100k is read from the file shipped inside the recbole wheel; recbole itself is never imported
	$(PY) -m pip install --no-deps "$(RECBOLE)"
	touch $@

run: install
	$(PY) -m fatsmb_lib.course.pipeline --dataset $(DATASET) --profile $(PROFILE) --device $(DEVICE)

# nbval executes the notebooks in place with their default parameters; start from a clean
# scratch run folder so no checkpoint of an earlier code version is reused. The 25 slowest
# tests are listed at the end, so the log says where CI's time goes.
test: install
	rm -rf runs/ml100k-default
	$(PY) -m pytest -q --durations=25 tests notebooks --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

bench: install
	$(PY) -m fatsmb_lib.studies.bench

# The students' copy: every notebook without its exercise solutions (cells tagged `solution`),
# in student/ (git-ignored). A copy changed since the last build is kept: FORCE=1 overwrites it.
student: install
	$(PY) -m fatsmb_lib.course.student --out student $(if $(FORCE),--force)

clean-venv:
	rm -rf $(VENV)
