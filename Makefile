# ops-engine: make install | run | test | bench
# Every step a fresh machine needs lives here; `make install` is idempotent.

PYTHON      ?= python3
VENV        := .venv
BIN         := $(VENV)/bin
STAMP       := $(VENV)/.installed
# Debian packages the engine and its tests need (installed with apt-get when missing).
# postgresql: the server binaries make run and the tests start a private cluster with.
# prometheus: promtool checks deploy/prometheus, and a test scrapes a worker with the real server.
# ffmpeg (with ffprobe), espeak-ng, fonts-dejavu-core: the video renderer (connectors/render).
DEB_PACKAGES ?= python3-venv procps curl postgresql prometheus ffmpeg espeak-ng fonts-dejavu-core
PYTEST_ARGS ?=

.PHONY: install deb run test unit integration bench bench-sync schema clean

install: deb $(STAMP)

deb:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

# PostgreSQL + embedded broker + one worker with its web server; Ctrl-C stops them. Data and logs in .run/.
run: install
	$(BIN)/ops-engine up

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

unit: install
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

integration: install
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/inventory.py
	$(BIN)/python bench/fulfillment.py
	$(BIN)/python bench/ingress.py
	$(BIN)/python bench/video.py
	$(BIN)/python bench/sync.py

# The supplier sync alone: 100,000 products from the fake suppliers into PostgreSQL (2 to 3 minutes here).
bench-sync: install
	$(BIN)/python bench/sync.py

schema: install
	$(BIN)/ops-engine schema --out docs/schema

clean:
	rm -rf .run .pytest_cache
