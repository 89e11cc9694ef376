# actrix: two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
CONFIG ?= etc/actrix.dev.toml
# Extra trial options, e.g. TRIAL_ARGS=--temp-directory=/tmp/trial-me when several trees test at once.
TRIAL_ARGS ?=
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

# Real clients and servers the integration tests drive: coturn's turnutils_*,
# Debian's chromium (the rooms demo page through Playwright), PostgreSQL's
# initdb/pg_ctl (the tests start their own throwaway cluster; the package's
# system cluster is stopped and disabled again) and redis-server (the tests start
# their own on a free port; the system instance is disabled). Needs root on a
# fresh Debian machine; skipped quietly where the tools are already present.
tools:
	@command -v turnutils_uclient >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends coturn >/dev/null) \
	      && (systemctl disable --now coturn >/dev/null 2>&1 || true); \
	  else echo "coturn tools missing and not root: integration tests needing them will skip"; fi; }
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	  else echo "chromium missing and not root: the browser test will skip (fails under CI=true)"; fi; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; \
	    systemctl disable --now postgresql >/dev/null 2>&1 || true; \
	    pg_lsclusters -h 2>/dev/null | while read -r version name _; do \
	      pg_ctlcluster "$$version" "$$name" stop >/dev/null 2>&1 || true; done; \
	  else echo "PostgreSQL missing and not root: PostgreSQL tests will skip (fail under CI=true)"; fi; }
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null; \
	    systemctl disable --now redis-server >/dev/null 2>&1 || true; \
	  else echo "redis-server missing and not root: Redis tests will skip (fail under CI=true)"; fi; }

run: $(STAMP)
	mkdir -p var
	$(VENV)/bin/actrix realm add --id 1 --name dev --if-missing -c $(CONFIG)
	@$(VENV)/bin/actrix admin-token list -c $(CONFIG) 2>/dev/null | grep -q active || \
	  echo "Admin console: http://127.0.0.1:8080/admin/ -- create your first admin token with:" \
	       "$(VENV)/bin/actrix admin-token create --name $${USER:-admin} -c $(CONFIG)"
	$(VENV)/bin/twistd --nodaemon --pidfile= --logger actrix.core.logging.console_observer actrix -c $(CONFIG)

lint: $(TSTAMP)
	$(VENV)/bin/ruff check actrix tests bench twisted docs
	$(VENV)/bin/ruff format --check actrix tests bench twisted docs

typecheck: $(TSTAMP)
	$(VENV)/bin/mypy actrix tests docs

trial: $(TSTAMP) tools
	HYPOTHESIS_PROFILE=ci $(PY) -b -m twisted.trial --random=0 -j2 $(TRIAL_ARGS) tests

test: lint typecheck trial

# Regenerate the committed protobuf modules (needs grpcio-tools, dev only).
protos: $(TSTAMP)
	$(PIP) install -q grpcio-tools
	$(PY) -m grpc_tools.protoc -I . --python_out=. --pyi_out=. actrix/proto/*.proto

bench: $(STAMP)
	$(PY) bench/identity.py
	$(PY) bench/turn.py
	$(PY) bench/signaling.py
	$(PY) bench/protoc.py
	$(PY) bench/rooms.py

# Debian package (debian/, dh-virtualenv): dist/actrix_VERSION_ARCH.deb.
# DEB_BUILD_OPTIONS=nocheck skips the unit tests run against the built venv.
deb:
	rm -rf build
	dpkg-buildpackage -us -uc -b
	mkdir -p dist
	v=$$(dpkg-parsechangelog -S Version) a=$$(dpkg-architecture -q DEB_HOST_ARCH) && \
	  mv ../actrix_$${v}_$${a}.deb ../actrix_$${v}_$${a}.buildinfo ../actrix_$${v}_$${a}.changes dist/
	debian/rules clean >/dev/null
	rm -rf build
	@ls -l dist/*.deb

.PHONY: deb-check lock

# Build, install, check, run and purge the package (root, Debian; CI step).
deb-check:
	.ci/deb-check

# requirements.lock (the package's pinned runtime deps, installed with --no-deps)
# and debian/test-requirements.lock (what the unit tests add), resolved from
# setup.cfg in a clean venv on Debian's interpreter. Rerun after changing
# install_requires; the package build's `pip check` fails until you do.
LOCK_PYTHON ?= /usr/bin/python3
lock:
	rm -rf build
	set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(LOCK_PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/pip" install -q --disable-pip-version-check .; \
	"$$tmp/venv/bin/pip" freeze --all --exclude actrix --exclude pip > "$$tmp/runtime"; \
	"$$tmp/venv/bin/pip" install -q --disable-pip-version-check hypothesis; \
	"$$tmp/venv/bin/pip" freeze --all --exclude actrix --exclude pip > "$$tmp/all"; \
	{ echo "# Generated by \`make lock\` from setup.cfg install_requires ($$($(LOCK_PYTHON) -V))."; \
	  echo "# The Debian package installs exactly these with pip --no-deps."; \
	  cat "$$tmp/runtime"; } > requirements.lock; \
	{ echo "# Generated by \`make lock\`: what the unit tests need beyond requirements.lock"; \
	  echo "# (installed next to the built venv, not into it, by debian/run-unit-tests)."; \
	  grep -vxF -f "$$tmp/runtime" "$$tmp/all"; } > debian/test-requirements.lock
	rm -rf build
	@echo "requirements.lock: $$(grep -vc '^#' requirements.lock) pins"

clean:
	rm -rf $(VENV) var _trial_temp* build *.egg-info
