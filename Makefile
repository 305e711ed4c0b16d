# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP    := $(BIN)/pip install -q --disable-pip-version-check -c constraints.txt

.PHONY: run test test-all bench venv clean

venv: $(STAMP)

# torch/torchvision are pinned through constraints.txt (they lie on these machines' disk);
# sam2 builds without its optional CUDA extension and against the venv's torch.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.14.1 torchvision==0.29.1
	SAM2_BUILD_CUDA=0 $(PIP) --no-build-isolation 'sam2>=1.1.0,<1.2'
	$(PIP) -e '.[model,parquet,ray,dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/decaf run

# `make test`: the fast suite (under 3 minutes on 2 idle cores). Tests marked `slow` (tiny models
# through the whole pipeline, headless browser, ...) run in `make test-all`, which CI runs.
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

test-all: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
