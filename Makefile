# deepfake-serve: `make demo` is the main job, `make test` the whole test suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SAMPLE_DATA ?= ../shared/data

.PHONY: setup check-java demo test test-slow lint format clean

setup: check-java $(VENV)/.installed  ## create .venv with the pinned packages

check-java:  ## TorchServe needs a Java 17+ runtime
	@version=$$(java -version 2>&1 | awk -F'"' '/version/ {print $$2; exit}'); \
	if [ -z "$$version" ]; then \
		echo "make setup: no Java found. TorchServe needs Java 17 or newer:" \
		     "apt-get install openjdk-17-jre-headless" >&2; exit 1; fi; \
	major=$${version%%.*}; \
	if [ "$$major" -lt 17 ]; then \
		echo "make setup: Java $$version found, TorchServe needs 17 or newer:" \
		     "apt-get install openjdk-17-jre-headless" >&2; exit 1; fi; \
	echo "Java $$version found"

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip check
	touch $@

demo: setup  ## main job (for now: what the pipeline finds in the sample videos)
	$(PY) -m model.scan $(SAMPLE_DATA)/videos

test: setup lint  ## the whole suite except tests marked slow
	$(PY) -m pytest -m "not slow"

test-slow: setup  ## only the tests marked slow
	$(PY) -m pytest -m slow

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf .pytest_cache .ruff_cache .hypothesis
