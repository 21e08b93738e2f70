# Two set-up commands on a fresh machine with Python 3.11:
#   make serve   -> creates .venv, installs hookcast (runtime dependencies only), starts
#                   the server on ./hookcast.db
#   make test    -> creates .venv, adds the test tools, runs the whole suite
PYTHON ?= python3.11
VENV   ?= .venv
PY      = $(VENV)/bin/python
RUNTIME = $(VENV)/.runtime
STAMP   = $(VENV)/.installed
SDK1    = $(VENV)/sdk1
LINTED  = src tests $(wildcard bench)

.PHONY: serve test check lint types bench bench-quick clean browser soak

# the dashboard's end-to-end test drives Debian's chromium at this path through Playwright,
# which never downloads a browser of its own
CHROMIUM = /usr/bin/chromium
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

# serving needs hookcast and its runtime dependencies only; the suite adds its tools
$(RUNTIME): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $(RUNTIME)

$(STAMP): $(RUNTIME)
	$(PY) -m pip install -q -e '.[dev]'
	# convoy-python 1.0.0a1 shares the "convoy" package name with 0.2.0, so it lives apart
	$(PY) -m pip install -q --pre --target $(SDK1) 'convoy-python==1.0.0a1'
	touch $(STAMP)

# development default: let deliveries reach receivers on this machine (the SSRF guard
# refuses loopback otherwise); production leaves HOOKCAST_ALLOWED_NETWORKS empty
serve: $(RUNTIME)
	HOOKCAST_ALLOWED_NETWORKS=$${HOOKCAST_ALLOWED_NETWORKS-127.0.0.0/8,::1/128} $(VENV)/bin/hookcast serve $(ARGS)

# the suite drives Debian's chromium (the dashboard test): installed first if missing
test: $(STAMP) browser
	$(PY) -m pytest $(ARGS)

# the hostile receiver zoo, longer and randomized (HOOKCAST_ZOO_EXAMPLES runs of
# HOOKCAST_ZOO_CASES random receivers per store), then its figures: cases, duplicates, lost
SOAK_REPORT = .soak-report.jsonl
soak: $(STAMP)
	rm -f $(SOAK_REPORT)
	HOOKCAST_ZOO_EXAMPLES=$${HOOKCAST_ZOO_EXAMPLES-25} HOOKCAST_ZOO_CASES=$${HOOKCAST_ZOO_CASES-20} \
		HOOKCAST_ZOO_REPORT=$(CURDIR)/$(SOAK_REPORT) \
		$(PY) -m pytest -q -p no:cacheprovider --timeout 3600 tests/e2e/test_zoo.py $(ARGS)
	$(PY) tests/soak_report.py $(SOAK_REPORT)

lint: $(STAMP)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/lint-imports

types: $(STAMP)
	$(VENV)/bin/mypy

# the one check command: format, lint, types, tests
check: lint types test

# the benchmarks also need the `bench` extra (Celery, dramatiq: the baselines); CI does not
$(VENV)/.bench-installed: $(STAMP) pyproject.toml
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $@

bench: $(VENV)/.bench-installed
	$(PY) -m bench $(ARGS)

bench-quick: $(VENV)/.bench-installed
	$(PY) -m bench --quick $(ARGS)

# installs Debian's chromium (as root) unless it is there already
browser:
	@test -x $(CHROMIUM) || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	@$(CHROMIUM) --version 2>/dev/null

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
