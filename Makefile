# Two commands matter on a fresh machine: `make run` and `make test`.
# Both install into .venv first if needed.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MMS_PORT ?= 10102
STATE_DIR ?= $(CURDIR)/state

.PHONY: install run test bench lint clean system-deps

# System packages the tests need (socat makes pty pairs for the bench
# serial-port tests). Installed only when missing, and only as root.
system-deps:
	@if ! command -v socat >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -q socat >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null && apt-get install -y -q socat >/dev/null)); \
	  else echo "note: socat not installed (needs root + apt-get); its tests will be skipped"; fi; \
	fi

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP) system-deps

run: install
	$(VENV)/bin/inverter-agent run --simulate --mms-host 127.0.0.1 --mms-port $(MMS_PORT) \
	  --state-dir $(STATE_DIR)

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) bench/run.py

lint: install
	$(VENV)/bin/ruff check hal inverter_agent simulator tests bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis state
