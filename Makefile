# actrix: two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
CONFIG ?= etc/actrix.dev.toml
STAMP  := $(VENV)/.installed-$(shell cat setup.cfg | cksum | cut -d' ' -f1)
TSTAMP := $(VENV)/.installed-test-$(shell cat setup.cfg | cksum | cut -d' ' -f1)

.PHONY: run test lint typecheck trial install install-test protos bench clean deb tools

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip setuptools wheel

$(STAMP): $(PY) setup.cfg pyproject.toml
	$(PIP) install -q -e . --config-settings editable_mode=compat
	$(PY) -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
	touch $@

$(TSTAMP): $(STAMP)
	$(PIP) install -q -e '.[test]' --config-settings editable_mode=compat
	touch $@

install: $(STAMP)
install-test: $(TSTAMP) tools

# Real clients the integration tests drive (coturn's turnutils_*). Needs root on a
# fresh Debian machine; skipped quietly where the tools are already present.
tools:
	@command -v turnutils_uclient >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends coturn >/dev/null) \
	      && (systemctl disable --now coturn >/dev/null 2>&1 || true); \
	  else echo "coturn tools missing and not root: integration tests needing them will skip"; fi; }

run: $(STAMP)
	mkdir -p var
	$(VENV)/bin/actrix realm add --id 1 --name dev --if-missing -c $(CONFIG)
	$(VENV)/bin/twistd --nodaemon --pidfile= --logger actrix.core.logging.console_observer actrix -c $(CONFIG)

lint: $(TSTAMP)
	$(VENV)/bin/ruff check actrix tests bench twisted
	$(VENV)/bin/ruff format --check actrix tests bench twisted

typecheck: $(TSTAMP)
	$(VENV)/bin/mypy actrix tests

trial: $(TSTAMP) tools
	HYPOTHESIS_PROFILE=ci $(PY) -b -m twisted.trial --random=0 -j2 tests

test: lint typecheck trial

# Regenerate the committed protobuf modules (needs grpcio-tools, dev only).
protos: $(TSTAMP)
	$(PIP) install -q grpcio-tools
	$(PY) -m grpc_tools.protoc -I . --python_out=. --pyi_out=. actrix/proto/*.proto

bench: $(STAMP)
	$(PY) bench/identity.py
	$(PY) bench/turn.py
	$(PY) bench/signaling.py

deb:
	dpkg-buildpackage -us -uc -b

clean:
	rm -rf $(VENV) var _trial_temp* build *.egg-info
