#!/usr/bin/env bash
# The GPU measurement of the engine, in one command of under 8 minutes on one H100/H200:
#
#   bash bench/perf/gpu_check.sh OUT_DIR          # on the GPU machine
#   GPU_CHECK_DRY=1 PYTHON=.venv/bin/python bash bench/perf/gpu_check.sh /tmp/out
#                                                 # a dry run on a CPU, tiny sizes
#
# In order of importance, each part under its own time limit so that the later ones still run:
#   1. the machine (GPU, driver, torch, CUDA) and the CUDA tests: no host sync inside an engine
#      step of any method, masks drawn without a sync;
#   2. bench perf at batch 256, bf16, every method at encoder s, then JEPA at xs, profiled
#      (kernel launches, host syncs, device busy time per step) and the paper-preset projection;
#   3. the loss curves of the first 50 steps, engine vs eager step (bench perf --equivalence);
#   4. every method at encoder b;
#   5. JEPA at s compiled (compile time reported apart).
# Writes to OUT_DIR: gpu-check.log, each part's markdown report and all reports (json + md) in
# reports.tar.gz (a device machine returns at most 8 files).
# Wheels in .whl/ (lightly, wfdb and their needs) are installed first when present.
set -uo pipefail
OUT=${1:?usage: gpu_check.sh OUT_DIR}
mkdir -p "$OUT"
LOG="$OUT/gpu-check.log"
REPORTS=$(mktemp -d)
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
if [ -z "${GPU_CHECK_DRY:-}" ] && compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export BENCH_RESULTS_DIR="$REPORTS/results"  # the synthetic data set and its caches
BENCH=("$PY" -m bench.cli)

if [ -n "${GPU_CHECK_DRY:-}" ]; then  # the same commands, tiny, on this machine's CPU
  COMMON=(--device cpu --preset smoke --batch-size 8 --workers 1)
  S=tiny; XS=tiny; B=tiny; STEPS=1; WARMUP=1; EQ_STEPS=3; PRECISION=auto; T=300
else
  COMMON=(--device cuda --preset paper --batch-size 256 --workers 8)
  S=s; XS=xs; B=b; STEPS=20; WARMUP=5; EQ_STEPS=50; PRECISION=bf16; T=1
fi

part() {  # part SECONDS TITLE COMMAND...: run under a limit, log it, never stop the script
  local seconds=$(( $1 * T )) title=$2
  shift 2
  echo "=== $title ($(date -u +%T), limit ${seconds}s)" | tee -a "$LOG"
  timeout "$seconds" "$@" 2>&1 | tee -a "$LOG"
  echo "=== exit ${PIPESTATUS[0]}: $title" | tee -a "$LOG"
}

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'cudnn', torch.backends.cudnn.version(), 'device', torch.cuda.get_device_name() \
if torch.cuda.is_available() else 'none')"
  nproc
} 2>&1 | tee "$LOG"

part 60 "CUDA tests: no host sync in an engine step, masks" \
  "$PY" -m pytest -q -p no:cacheprovider tests/test_train.py tests/test_masks.py \
  tests/test_precision.py tests/test_augment.py -k "gpu or cuda or another_device"
part 140 "bench perf: every method at $S, profiled" \
  "${BENCH[@]}" perf "${COMMON[@]}" --precision "$PRECISION" --no-straightforward --profile \
  --encoder "$S" --steps "$STEPS" --warmup "$WARMUP" --timeout 60 --out "$REPORTS/1-s"
part 20 "bench perf: JEPA at $XS" \
  "${BENCH[@]}" perf "${COMMON[@]}" --precision "$PRECISION" --no-straightforward --profile \
  --method jepa --encoder "$XS" --steps "$STEPS" --warmup "$WARMUP" --no-projection \
  --timeout 30 --out "$REPORTS/2-xs"
part 90 "loss curves: engine vs eager, $EQ_STEPS steps" \
  "${BENCH[@]}" perf "${COMMON[@]}" --equivalence "$EQ_STEPS" --method jepa,ecg_jepa,simclr \
  --encoder "$S" --out "$REPORTS/3-equivalence"
part 80 "bench perf: every method at $B" \
  "${BENCH[@]}" perf "${COMMON[@]}" --precision "$PRECISION" --no-straightforward \
  --encoder "$B" --steps "$STEPS" --warmup "$WARMUP" --no-projection --timeout 40 \
  --out "$REPORTS/4-b"
part 80 "bench perf: JEPA at $S compiled" \
  "${BENCH[@]}" perf "${COMMON[@]}" --precision "$PRECISION" --no-straightforward --compile \
  --method jepa --encoder "$S" --steps "$STEPS" --warmup "$WARMUP" --no-projection \
  --timeout 75 --out "$REPORTS/5-compiled"
for md in "$REPORTS"/[1-5]-*/*.md; do
  [ -e "$md" ] && cp "$md" "$OUT/$(basename "$(dirname "$md")").md"
done
tar czf "$OUT/reports.tar.gz" -C "$REPORTS" --exclude results .
echo "=== done $(date -u +%T)" | tee -a "$LOG"
