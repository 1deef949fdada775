#!/usr/bin/env bash
# The GPU check in one call (under 8 minutes), on a fresh GPU machine, from the repository root:
#   bash bench/gpu_check.sh
# Needs .whl/ from bench/prepare_gpu_check.sh (carried with the working tree; no network there).
# Installs the wheels into /tmp/site (no torch pulled), then runs bench/gpu_check.py: CUDA tests, a
# tiny run + resume, a batched run, SCOOP -n 4 on one GPU, transfer on cuda and cpu, the GPU bench
# rows. Writes $OUT/gpu-check.json and $OUT/gpu-check.log (OUT defaults to bench/results/gpu-check).
# DEVICE=cpu runs the steps on the CPU, STEPS=a,b a subset, SKIP_INSTALL=1 uses the packages there
# are, PYTHON another interpreter than python3 (the test suite's dry run uses all four).
set -u
OUT="${OUT:-bench/results/gpu-check}"
mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)"
LOG="$OUT/gpu-check.log"
SITE="${SITE:-/tmp/site}"
PY="${PYTHON:-python3}"
echo "== gpu_check.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) device ${DEVICE:-cuda}" >> "$LOG"
if [ -z "${SKIP_INSTALL:-}" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
        >> "$LOG" 2>&1 || echo "install FAILED (see above)" >> "$LOG"
    export PYTHONPATH="$SITE:$PWD"
    # The code runs from this working tree, not the wheel's copy; the wheel brings the SCOOP hook's
    # .pth, which only a site directory's start-up reads: make $SITE one.
    rm -rf "$SITE/learngene_ea"
    printf 'import site\nsite.addsitedir(%s)\n' "'$SITE'" > "$SITE/sitecustomize.py"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH
timeout 470 "$PY" -m bench.gpu_check --out "$OUT" --device "${DEVICE:-cuda}" --budget "${BUDGET:-440}" \
    ${STEPS:+--steps "$STEPS"} 2>> "$LOG"
status=$?
echo "== exit $status" >> "$LOG"
exit $status
