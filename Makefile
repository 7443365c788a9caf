# The two commands of the README: `make demo` and `make test`. Each installs
# what it needs on first use (Debian packages, a .venv, zprof in it).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
ZPROF := $(VENV)/bin/zprof
DEBIAN_PACKAGES := redis-server redis-tools linux-perf valgrind binutils llvm gdb chromium chromium-driver golang-go
STAMP := $(VENV)/.installed

.PHONY: demo test check docs lint bench profile system-packages clean

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

# The whole validation, quickly, on minikv with two of its planted defects: it ends "needs work"
# (exit status 1, which is the demo working) and leaves report.md and report.html to read.
DEMO_DEFECTS := --defect alloc-reply --defect hot-loop
demo: $(STAMP)
	$(ZPROF) doctor || true
	$(ZPROF) validate --quick --project examples/minikv --server-args '$(DEMO_DEFECTS)' \
	  --output zprof-out/demo-$$(date +%Y%m%d-%H%M%S) || test $$? -eq 1

# Two test processes (pytest-xdist), a file each at a time, sharing one build of each minikv flavour.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -v -n 2 --dist loadfile --durations=15

# The edit-test loop: lint, the unit tests, the Zig tests of the shim and minikv, and one end-to-end smoke
# run of allocs, flame and bench on minikv. Builds are kept between runs in a cache of the tests' own.
CHECK_CACHE := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/zprof-check
check: $(STAMP)
	$(VENV)/bin/ruff check .
	ZPROF_TEST_CACHE=$(CHECK_CACHE) $(VENV)/bin/pytest -q -n 2 --dist loadfile -m "not slow or smoke"

# The example outputs in README.md and docs/: real runs on minikv (a few minutes), then the blocks rewritten
# from them. tests/test_docs.py fails when a block no longer matches what zprof prints.
docs: $(STAMP)
	$(PY) -m tests.docs_examples run
	$(PY) -m tests.docs_examples write

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# zprof's own speed (issue 14), each figure beside its anchor and target, on this machine. The anchors'
# scripts come from outside the project: FLAMEGRAPH_DIR names a checkout of Brendan Gregg's FlameGraph
# (stackcollapse-perf.pl); ZOLTRAAK_DIR a built Zoltraak checkout (else minikv stands in).
BENCH_PROJECT := $(or $(ZOLTRAAK_DIR),examples/minikv)
BENCH_OUT := zprof-out/bench-$(shell date +%Y%m%d-%H%M%S)
bench: $(STAMP)
	$(PY) benchmarks/shim_overhead.py
	mkdir -p $(BENCH_OUT)
	$(ZPROF) flame --project $(BENCH_PROJECT) --duration 30 --output $(BENCH_OUT)/flame >/dev/null
	$(PY) benchmarks/symbolise.py --perf-data $(BENCH_OUT)/flame/perf.data \
	  --binary "$$($(ZPROF) build --no-shim --project $(BENCH_PROJECT) 2>/dev/null | tail -1)"
	$(PY) benchmarks/driver.py
	$(PY) benchmarks/turnaround.py --project $(BENCH_PROJECT)
	$(PY) benchmarks/regress_power.py
	$(MAKE) profile

# zprof's own Python, sampled by py-spy (wall time, waits included) during an allocs and a flame run;
# writes speedscope files (open them at https://www.speedscope.app) and prints where the time went.
PROFILE_PROJECT := $(or $(ZOLTRAAK_DIR),examples/minikv)
PROFILE_OUT := zprof-out/profile-$(shell date +%Y%m%d-%H%M%S)
PY_SPY := $(VENV)/bin/py-spy record --idle --rate 100 --format speedscope
profile: $(STAMP)
	mkdir -p $(PROFILE_OUT)
	$(PY_SPY) -o $(PROFILE_OUT)/allocs.speedscope.json -- \
	  $(ZPROF) allocs HSET --project $(PROFILE_PROJECT) --requests 10000 --output $(PROFILE_OUT)/allocs
	$(PY_SPY) -o $(PROFILE_OUT)/flame.speedscope.json -- \
	  $(ZPROF) flame --project $(PROFILE_PROJECT) --duration 30 --output $(PROFILE_OUT)/flame
	$(PY) benchmarks/profile_summary.py $(PROFILE_OUT)/allocs.speedscope.json $(PROFILE_OUT)/flame.speedscope.json

clean:
	rm -rf $(VENV) .pytest_cache
