# Two commands matter on a fresh machine: `make run` and `make test`.
# Both install into .venv first if needed.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MMS_PORT ?= 10102
STATE_DIR ?= $(CURDIR)/state

.PHONY: install run status events test bench corpus lint clean system-deps

# System packages the tests need (socat makes pty pairs for the bench
# serial-port tests). Installed only when missing, and only as root.
system-deps:
	@if ! command -v socat >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -q socat >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null && apt-get install -y -q socat >/dev/null)); \
	  else echo "note: socat not installed (needs root + apt-get); its tests will be skipped"; fi; \
	fi
	@# debootstrap: the packaging tests build a throw-away Debian root with it;
	@# dpkg-dev: `make deb` reads library dependencies with dpkg-shlibdeps;
	@# curl, openssl: ../shared/tools/gridappsd_server.sh (the 2030.5 server the
	@# IEEE 2030.5 end-to-end tests run against) and the certificate tests call them.
	@for tool in debootstrap:debootstrap dpkg-shlibdeps:dpkg-dev curl:curl openssl:openssl; do \
	  cmd=$${tool%%:*}; pkg=$${tool#*:}; \
	  if ! command -v $$cmd >/dev/null 2>&1 && [ ! -x /usr/sbin/$$cmd ]; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	      (apt-get install -y -q $$pkg >/dev/null 2>&1 || \
	       (apt-get update -q >/dev/null && apt-get install -y -q $$pkg >/dev/null)); \
	    else echo "note: $$pkg not installed (needs root + apt-get); the tests that call $$cmd cannot run"; fi; \
	  fi; \
	done
	@# tshark: Wireshark's DNP3 dissector checks the outstation's frames (its install
	@# asks whether non-root users may capture: answered "no" non-interactively).
	@if ! command -v tshark >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (DEBIAN_FRONTEND=noninteractive apt-get install -y -q tshark >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -q tshark >/dev/null)); \
	  else echo "note: tshark not installed (needs root + apt-get); the DNP3 frame check will be skipped"; fi; \
	fi

# `make run` needs the gateway's dependencies only; the test tools (pytest, mypy,
# the interop clients, ...) come with `make install` / `make test`.
RUN_STAMP := $(VENV)/.installed-run

$(RUN_STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(STAMP): $(RUN_STAMP)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(STAMP) system-deps

run: $(RUN_STAMP)
	$(VENV)/bin/inverter-agent run --simulate --mms-host 127.0.0.1 --mms-port $(MMS_PORT) \
	  --state-dir $(STATE_DIR)

# `make run`'s state lives in $(STATE_DIR), not in the installed service's
# /var/lib/inverter-agent: these read it (so does `inverter-agent status` run from
# this directory, or anywhere with INVERTER_AGENT_STATE_DIR=$(STATE_DIR)).
status: $(RUN_STAMP)
	$(VENV)/bin/inverter-agent status --state-dir $(STATE_DIR)

events: $(RUN_STAMP)
	$(VENV)/bin/inverter-agent events --state-dir $(STATE_DIR)

# Whole modules on parallel workers (a module's fixtures are built once); most tests
# wait on sockets and child processes, so two workers fit a 2-core machine.
# TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2

test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

bench: install
	$(PY) bench/run.py

# One row per device profile (simulator/profiles): discovered, read error,
# volt-var error, false trips, seconds to the first good value.
corpus: install
	$(PY) bench/corpus.py

#: Checked by mypy (strict, per pyproject.toml): the core's view and command API,
#: the adapter interface and registry, the function registry, the composition root.
MYPY_FILES := inverter_agent/core/view.py inverter_agent/core/api.py \
  inverter_agent/core/commands.py inverter_agent/core/status.py \
  inverter_agent/adapters/__init__.py inverter_agent/adapters/base.py \
  inverter_agent/functions/registry.py inverter_agent/app.py

lint: install
	$(VENV)/bin/ruff check hal inverter_agent simulator tests bench
	$(VENV)/bin/mypy $(MYPY_FILES)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis state

# --- Installing on a gateway (docs/install.md) -------------------------------
# `make install-system` puts the service on this machine (as root), or stages it
# under DESTDIR; `make deb` packages the same tree for Debian 12. The venv is
# built with SYSTEM_PYTHON, the target's own interpreter, never the .venv one.
SYSTEM_PYTHON ?= /usr/bin/python3
DESTDIR ?=
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
DEB_VERSION ?= $(VERSION)
DEB_OUT ?= build
DEB_XZ_LEVEL ?= 6

.PHONY: install-system uninstall-system deb

install-system:
	DESTDIR='$(DESTDIR)' SYSTEM_PYTHON='$(SYSTEM_PYTHON)' sh packaging/install-system.sh

uninstall-system:
	DESTDIR='$(DESTDIR)' sh packaging/uninstall-system.sh

deb:
	DEB_VERSION='$(DEB_VERSION)' OUT_DIR='$(DEB_OUT)' SYSTEM_PYTHON='$(SYSTEM_PYTHON)' \
	  DEB_XZ_LEVEL='$(DEB_XZ_LEVEL)' \
	  sh packaging/build-deb.sh

# --- arm64 check (docs/install.md, "Checked on arm64 (emulated)") ----------------
# As root: builds the arm64 package in an emulated (qemu-user) bookworm arm64 root,
# installs it in another and reads a value from the running agent with the host's
# client. Slow under emulation, so not part of `make test`.
.PHONY: check-arm64

check-arm64: $(STAMP)
	bash packaging/check-arm64.sh

# --- armhf check (docs/install.md, "BeagleBone Black") -----------------------------------
# As root: the BeagleBone steps in an emulated (qemu-user) bookworm armhf root:
# its apt-get line, the libiec61850 build (from release tarballs at hand: see
# packaging/check-armhf.sh), make install-system, and the agent read from the
# host. Slow under emulation, so not part of `make test` nor of CI.
.PHONY: check-armhf

check-armhf: $(STAMP)
	bash packaging/check-armhf.sh
