# The two commands of the README: `make demo` and `make test`. Each installs
# what it needs on first use (Debian packages, a .venv, zprof in it).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
ZPROF := $(VENV)/bin/zprof
DEBIAN_PACKAGES := redis-server redis-tools linux-perf valgrind binutils chromium chromium-driver golang-go
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench system-packages clean

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-packages
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Debian packages zprof drives; installed only when one is missing.
system-packages:
	@missing=""; for pkg in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

demo: $(STAMP)
	$(ZPROF) doctor || true
	$(ZPROF) allocs HSET --project examples/minikv --server-args '--defect alloc-reply' --requests 50000

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -v

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) benchmarks/shim_overhead.py
	$(PY) benchmarks/perf_parse.py

clean:
	rm -rf $(VENV) .pytest_cache
