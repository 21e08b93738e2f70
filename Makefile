# Two set-up commands on a fresh machine with Python 3.11:
#   make serve   -> creates .venv, installs hookcast, starts the server on ./hookcast.db
#   make test    -> creates .venv, installs hookcast with its test tools, runs the whole suite
PYTHON ?= python3.11
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
SDK1    = $(VENV)/sdk1
LINTED  = src tests $(wildcard bench)

.PHONY: serve test check lint types bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# convoy-python 1.0.0a1 shares the "convoy" package name with 0.2.0, so it lives apart
	$(PY) -m pip install -q --pre --target $(SDK1) 'convoy-python==1.0.0a1'
	touch $(STAMP)

# development default: let deliveries reach receivers on this machine (the SSRF guard
# refuses loopback otherwise); production leaves HOOKCAST_ALLOWED_NETWORKS empty
serve: $(STAMP)
	HOOKCAST_ALLOWED_NETWORKS=$${HOOKCAST_ALLOWED_NETWORKS-127.0.0.0/8,::1/128} $(VENV)/bin/hookcast serve $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/ruff check $(LINTED)

types: $(STAMP)
	$(VENV)/bin/mypy

# the one check command: format, lint, types, tests
check: lint types test

bench: $(STAMP)
	$(PY) -m bench $(ARGS)

bench-quick: $(STAMP)
	$(PY) -m bench --quick $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
