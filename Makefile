# Two entry points on a fresh machine with only Python 3.11: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SOURCES := evidence storage flows cli web tests $(wildcard bench)

.PHONY: demo portal test lint typecheck unit bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	EVIDENCE_DATA_DIR=$(CURDIR)/demo-data $(BIN)/evidence demo

portal: $(STAMP)  # the investigators' portal on the demo data (make demo first): http://localhost:8000/sign-in
	EVIDENCE_DATA_DIR=$(CURDIR)/demo-data $(BIN)/evidence serve

lint: $(STAMP)
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)

typecheck: $(STAMP)
	$(BIN)/mypy evidence storage

unit: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider -n 3 --dist worksteal  # 3 on 2 cores: many tests wait on servers

# Ceph RGW, Chromium and the OIDC provider's npm packages install (when missing) while lint and the
# type check run; the suite starts once both are done.
test: $(STAMP)
	@$(BIN)/python -m tests.prepare & prepare=$$!; status=0; \
	$(MAKE) --no-print-directory lint typecheck || status=$$?; \
	wait $$prepare; [ $$status -eq 0 ] || exit $$status; \
	$(MAKE) --no-print-directory unit

bench: $(STAMP)  # every benchmark in turn; each writes bench/results/<name>.{json,md}
	$(BIN)/python -m bench.run_all
	$(BIN)/python -m bench.run_all --server rgw  # Ceph RGW 16: installed as root if missing (tests/rgw.py)
	$(BIN)/python -m bench.small_photos
	$(BIN)/python -m bench.concurrent_docks
	$(BIN)/python -m bench.catalog_lookup
	$(BIN)/python -m bench.retention_run
	$(BIN)/python -m bench.feed_linking
	$(BIN)/python -m bench.portal_playback  # local vault and Ceph RGW (tests/rgw.py)
	$(BIN)/python -m bench.dock_speed  # before (96e089d) and after this checkout, one run; restic installed as root if missing

clean:
	rm -rf $(VENV) demo-data .pytest_cache .mypy_cache .ruff_cache tests/oidc/node_modules
