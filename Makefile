# Isthmus: the two commands a newcomer needs are `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= ./isthmus-data

.PHONY: run test lint lint-js vendor-js test-python test-js fuzz bench bench-scale system-deps clean

run:
	@scripts/venv.sh
	$(VENV)/bin/isthmus serve --data $(DATA)

test: system-deps
	@scripts/venv.sh test
	@$(MAKE) --no-print-directory lint test-python test-js

lint: lint-js
	@scripts/venv.sh test
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

# Biome (pinned in package.json/package-lock.json) lints and format-checks the browser code;
# `npx biome check --write src/isthmus/viewer tests/js tests/dimse/js` applies its fixes and formatting.
# npm ci again whenever package-lock.json is newer than what it installed (new pins such
# as dcmjs-dimse, the DICOM peer of tests/dimse/test_dcmjs_peer.py).
lint-js:
	@test node_modules/.package-lock.json -nt package-lock.json || npm ci --no-audit --no-fund
	npx biome check src/isthmus/viewer tests/js tests/dimse/js

# Re-copy the vendored browser libraries (src/isthmus/viewer/vendor/) after changing their pins.
vendor-js:
	scripts/vendor-js.sh

test-python:
	$(PY) -m pytest

# The property-based suites (tests/**/test_*_properties.py) with many more examples than
# `make test` runs (Hypothesis profile "fuzz", tests/conftest.py).
fuzz: system-deps
	@scripts/venv.sh test
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q $$(find tests -name 'test_*_properties.py' | sort)

test-js:
	@if find tests/js -name '*.test.mjs' | grep -q .; then \
	  node --test tests/js/; else echo "no JavaScript tests"; fi

system-deps:
	@scripts/system-deps.sh test

bench:
	@scripts/system-deps.sh bench
	@scripts/venv.sh test
	$(PY) -m bench

# Isthmus at 10k, 100k and 1M instances on SQLite and PostgreSQL, Orthanc at 100k
# (docs/performance.md, "At scale"); about an hour.  SIZES=10000,100000 for a shorter run.
SIZES ?= 10000,100000,1000000
bench-scale:
	@scripts/system-deps.sh bench
	@scripts/venv.sh test
	@VENV=$(VENV) scripts/venv.sh bench
	$(PY) -m bench.scale --sizes $(SIZES)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
