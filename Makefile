# The README's two set-up commands: `make demo` and `make test`. Each creates or reuses .venv and installs what it
# needs first. torch, torchvision and facenet-pytorch are pinned in pyproject.toml and installed in one pip command
# so pip never downgrades torch.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_OUT ?= outputs/demo

.PHONY: install demo test test-fast lint annotate-sample clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,ray]"
	@touch $(STAMP)

install: $(STAMP)

# The main job on the bundled sample: annotate assets_sample/ -> evaluate the detector on its labels -> simulated
# engagement over the annotated features -> screening, overlap, DML, sensitivity -> report.html.
demo: $(STAMP)
	$(PY) scripts/run_experiment.py experiment=face_presence data=sample input=assets_sample/images \
		labels=assets_sample/labels.csv paths.outputs=outputs hydra.run.dir=$(DEMO_OUT)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache .ruff_cache
