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
	# ACIC 2016 and NHEFS tables of scripts/bench_accuracy.py (bench and its tests only). --no-deps: causallib
	# pins pandas<3, which would downgrade ours; the harness reads its CSV files and never imports it.
	$(PY) -m pip install --quiet --no-deps "causallib==0.10.0"
	@touch $(STAMP)

install: $(STAMP)

# The main job on the bundled sample, all four analyses: annotate assets_sample/ -> simulated engagement over the
# annotated features -> (1) the mediation of face count by face size ($(DEMO_OUT)/mediation/report.html), then
# evaluate the detector on its labels -> screening, overlap, DML with CATEs, sensitivity -> $(DEMO_OUT)/report.html,
# which shows and links the mediation run (report.links). The second run reuses the annotations of the first.
demo: $(STAMP)
	$(PY) scripts/run_experiment.py experiment=face_count_mediation data=sample input=assets_sample/images \
		'steps=[annotate,screening,mediation]' paths.outputs=outputs hydra.run.dir=$(DEMO_OUT)/mediation
	$(PY) scripts/run_experiment.py experiment=face_presence data=sample input=assets_sample/images \
		labels=assets_sample/labels.csv paths.outputs=outputs 'report.links=[mediation]' hydra.run.dir=$(DEMO_OUT)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache .ruff_cache
