#!/usr/bin/env bash
# One-shot GPU check for dlnsim (issue 5, item 6). Run once on a machine with an NVIDIA GPU:
#
#   bash benchmarks/gpu_check.sh OUTDIR
#
# It (1) installs the project (pip install -e .[test], plus jax[cuda12] when JAX does not
# see a GPU, plus torch for the peers when missing), (2) runs the test suite on the GPU,
# (3) runs the throughput benchmark at the paper and small sizes, (4) writes everything to
# OUTDIR and prints a summary. Budget: about 7 minutes once packages are present (measured on
# an H200 with 16 cores, jax 0.11.2, 2026-11-27: install 25 s, tests 169 s on 8 workers, paper
# sizes ~3 minutes: XLA's GPU compiles of the paper-size programs take 20-35 s each), at most 8.
# The JSON is written after each method, so a size cut short keeps what it measured.
#
# Offline machines: pip cannot download jax[cuda12] (~1 GB of CUDA wheels) or torch. Then
# the script says so and goes on with what is installed: without a GPU JAX it stops after
# the install step (a CPU run is not a GPU check); without torch the torch columns are null.
# Pre-install them (pip download on a connected machine, pip install --no-index) if needed.
#
# Wheels for packages the GPU machine lacks can be brought along: put them in ROOT/.whl (or
# name a folder in WHEELS; an ignored folder must be sent explicitly) and they are
# installed first, offline. On an image
# that has JAX with CUDA, PyTorch, xarray and h5py, h5netcdf is the only one dlnsim needs
# (the notebook tests skip themselves without nbclient).
#
# Environment knobs: PYTHON (interpreter, default python3), SKIP_INSTALL=1 (use the current
# environment as is), WHEELS (folder of wheels, default ROOT/.whl), TEST_TIMEOUT (seconds,
# default 210: the suite took 169 s on an H200 on 2026-11-27 and has grown since),
# TEST_WORKERS (default 3/4 of the cores, at most 12), BENCH_TIMEOUT (seconds per size; default
# 180 for the paper sizes, 90 for the small ones), PROBE_AFTER (seconds: the touches probe
# runs only if the check has taken less, default 400), PROBE_TIMEOUT (default 75), PYTEST_ARGS
# (files or tests to run instead of the whole suite, as pytest words; each part takes its own).
# OUTDIR receives 10 files (some remote runners return no more).
#
# DRY_RUN=1 runs the script's own steps on any machine in under a minute, for the tests
# (tests/test_benchmarks.py): no install, no GPU needed, the tests of PYTEST_ARGS (default
# tests/test_random.py tests/test_config.py: one file of each part) in one process, and the benchmarks at their toy sizes (--tiny).

set -u
OUT="${1:?usage: bash benchmarks/gpu_check.sh OUTDIR}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
DRY="${DRY_RUN:-0}"
if [ "$DRY" = 1 ]; then
  SKIP_INSTALL=1 SIZES=tiny TEST_WORKERS="${TEST_WORKERS:-0}" TINY=--tiny
  PYTEST_ARGS="${PYTEST_ARGS:-tests/test_random.py tests/test_config.py}"
else
  SIZES="paper small" TINY=
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
LOG="$OUT/gpu_check.log"
: >"$LOG"
START=$(date +%s)
say() { echo "[gpu_check $(($(date +%s) - START))s] $*" | tee -a "$LOG"; }
cd "$ROOT"

has_gpu_jax() { "$PY" -c 'import jax, sys; sys.exit(0 if jax.default_backend() == "gpu" else 1)' >/dev/null 2>&1; }
has_torch() { "$PY" -c 'import torch' >/dev/null 2>&1; }

# ---------------------------------------------------------------- 1. install
WHEELS="${WHEELS:-$ROOT/.whl}"
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    say "installing the wheels in $WHEELS (offline)"
    "$PY" -m pip install -q --no-index --no-deps "$WHEELS"/*.whl >>"$LOG" 2>&1 || say "WARNING: could not install the wheels in $WHEELS"
  fi
  say "installing dlnsim (pip install -e .[test])"
  if ! "$PY" -m pip install -q -e ".[test]" >>"$LOG" 2>&1; then
    # Offline, the isolated build env cannot fetch setuptools: build with what is installed.
    say "pip install -e .[test] failed (offline?); retrying with --no-build-isolation"
    "$PY" -m pip install -q --no-build-isolation -e ".[test]" >>"$LOG" 2>&1 \
      || "$PY" -m pip install -q --no-deps --no-build-isolation -e . >>"$LOG" 2>&1 \
      || say "WARNING: could not install dlnsim (see $LOG)"
  fi
  if ! has_gpu_jax; then
    JV="$("$PY" -c 'import jax; print(jax.__version__)' 2>/dev/null)"
    say "JAX does not see a GPU: installing jax[cuda12]${JV:+==$JV} (needs network, ~1 GB)"
    "$PY" -m pip install -q "jax[cuda12]${JV:+==$JV}" >>"$LOG" 2>&1 \
      || "$PY" -m pip install -q "jax[cuda12]" >>"$LOG" 2>&1 \
      || say "WARNING: pip install jax[cuda12] failed (offline?)"
  fi
  if ! has_torch; then
    say "torch missing: installing the [bench] extra (torch with CUDA; needs network)"
    "$PY" -m pip install -q -e ".[bench]" >>"$LOG" 2>&1 || say "WARNING: no torch: torch columns will be null"
  fi
fi

"$PY" - <<'EOF' 2>&1 | tee -a "$LOG" | tee "$OUT/environment.txt"
import jax, platform
print("python", platform.python_version(), "| jax", jax.__version__, "| backend", jax.default_backend())
print("devices:", jax.devices())
try:
    import torch
    print("torch", torch.__version__, "| cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
except ImportError:
    print("torch: not installed")
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >>"$OUT/environment.txt" 2>&1

if [ "$DRY" = 1 ]; then
  say "dry run (DRY_RUN=1): toy sizes on $("$PY" -c 'import jax; print(jax.default_backend())' 2>/dev/null)"
elif ! has_gpu_jax; then
  say "FAILED: JAX has no GPU backend (see $LOG). Install jax[cuda12] matching your jax version and rerun."
  exit 2
fi

# ---------------------------------------------------------------- 2. tests on the GPU
# In two parts, each with its own summary line: first the tests whose results depend on the
# JAX backend (marker "device": steps, training, theory, sweeps, devices), then the others
# (configs, files, CLI, pictures, notebooks: the same on any backend) in the time left. A
# timeout then cuts short the part that matters least, and never hides the first part's failures.
TEST_LIMIT="${TEST_TIMEOUT:-210}"
say "running the test suite (timeout $TEST_LIMIT s): the backend's tests first, then the others"
# xdist workers share the GPU (conftest.py turns off JAX's memory preallocation): 3/4 of the
# cores, 1 to 12 (the suite is compile-bound: host cores, not the GPU, set its pace; it took
# 169 s on 8 workers when it had 270 tests, and has 567 now, 206 of them "device").
WORKERS="${TEST_WORKERS:-$(( $(nproc) * 3 / 4 ))}"
[ "$WORKERS" -gt 12 ] && WORKERS=12
[ "$WORKERS" -lt 1 ] && [ "$DRY" != 1 ] && WORKERS=1
TESTS_START=$(date +%s)
TEST_RC=0
TEST_LINES=""
: >"$OUT/tests.txt"
for part in "device" "not device"; do
  left=$(( TEST_LIMIT - ($(date +%s) - TESTS_START) ))
  if [ "$left" -lt 20 ]; then
    line="[$part] not run: no time left (TEST_TIMEOUT=$TEST_LIMIT s)"
    TEST_RC=124
  else
    echo "== pytest -m '$part and not slow' ${PYTEST_ARGS:-}" >>"$OUT/tests.txt"
    # shellcheck disable=SC2086  # PYTEST_ARGS is a list of words
    timeout "$left" "$PY" -m pytest -q -n "$WORKERS" -p no:cacheprovider -p no:benchmark -rfE \
      -m "$part and not slow" ${PYTEST_ARGS:-} >>"$OUT/tests.txt" 2>&1
    rc=$?
    [ $rc = 5 ] && rc=0  # PYTEST_ARGS holds no test of this part
    [ $rc != 0 ] && TEST_RC=$rc
    line="[$part] $(tail -n 1 "$OUT/tests.txt")"
    [ $rc = 124 ] && line="$line: TIMED OUT after $left s (partial results in tests.txt)"
  fi
  say "tests $line"
  TEST_LINES="$TEST_LINES$line
"
done

# ---------------------------------------------------------------- 3. throughput
BENCH_RC=0
for size in $SIZES; do
  limit="${BENCH_TIMEOUT:-$([ "$size" = paper ] && echo 180 || echo 90)}"
  say "throughput benchmark, $size sizes (timeout $limit s)"
  [ "$size" = tiny ] && which=--tiny || which="--sizes $size"
  # shellcheck disable=SC2086  # $which is an option and its value
  timeout "$limit" "$PY" benchmarks/throughput.py $which --out "$OUT/throughput_$size.json" \
    >"$OUT/throughput_$size.txt" 2>>"$LOG"
  rc=$?
  [ $rc != 0 ] && { BENCH_RC=$rc; say "throughput $size failed (rc $rc)"; }
done

# ---------------------------------------------------------------- 4. probe, if time is left
# benchmarks/touches.py: steps that fuse each layer's update with the next forward (fewer
# weight touches, the way to the H100 paper-size target). Last: it must not cost the figures above.
if [ $(( $(date +%s) - START )) -lt "${PROBE_AFTER:-400}" ]; then
  say "touches probe (timeout ${PROBE_TIMEOUT:-75} s)"
  timeout "${PROBE_TIMEOUT:-75}" "$PY" benchmarks/touches.py $TINY --out "$OUT/touches.json" >"$OUT/touches.txt" 2>&1 \
    || say "touches probe stopped (rc $?; what it measured is in touches.json)"
else
  say "no time left for the touches probe (PROBE_AFTER=${PROBE_AFTER:-400} s)"
fi

# ---------------------------------------------------------------- 5. summary
say "summary"
{
  echo "== tests (rc $TEST_RC)"; printf %s "$TEST_LINES"
  for size in $SIZES; do
    echo "== throughput $size"
    # The table comes at the end; the figures of a run cut short are in the log, method by method.
    [ -s "$OUT/throughput_$size.txt" ] && cat "$OUT/throughput_$size.txt" || grep -F "[$size]   " "$LOG"
  done
  [ -s "$OUT/touches.txt" ] && { echo "== touches probe"; cat "$OUT/touches.txt"; }
  echo "== files in $OUT"; ls -1 "$OUT"
  echo "== total $(($(date +%s) - START)) s"
} | tee "$OUT/summary.txt"
[ $TEST_RC = 0 ] && [ $BENCH_RC = 0 ]
