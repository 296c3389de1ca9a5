# crossfake: the two commands of the README's Quick start are `make demo` and `make test`.
# Both create the virtual environment on first use, so a fresh machine needs nothing else.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo

.PHONY: install demo test test-fast lint bench tiny-backbone clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade "pip==25.3"
	$(BIN)/pip install -e ".[clip,vlm,serve,faces,distributed,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)  ## `crossfake run demo`: report 1's study on the synthetic FF++ with small models -> $(DEMO_DIR)/report/report.html
	$(BIN)/crossfake run demo --out $(DEMO_DIR)

test: $(STAMP)  ## the whole test suite (CI runs exactly this)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_prepare.py

tiny-backbone: $(STAMP)  ## rebuild the demo's pretrained CLIP (synth-tiny) in src/crossfake/assets/clip-synth-tiny
	$(BIN)/python -m crossfake.models.pretrain --config src/crossfake/configs/pretrain/clip-synth-tiny.yaml \
		--out src/crossfake/assets/clip-synth-tiny

clean:
	rm -rf $(VENV) runs .pytest_cache
