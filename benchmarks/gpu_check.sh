#!/usr/bin/env bash
# The GPU checks of issue 8 (run on a CUDA machine from the repo root; logs go to $OUT or ./).
#   bash benchmarks/gpu_check.sh speed    # 200 epochs of ResNet-32 on a CIFAR-100-LT-sized synthetic set:
#                                         # compile="reduce-overhead" (CUDA graphs), eager fp32, then the
#                                         # reference loop for 10 epochs (extrapolated); about 6-8 minutes
#   bash benchmarks/gpu_check.sh compile  # the other compiled configurations (default mode)
#   bash benchmarks/gpu_check.sh parity   # Fashion-MNIST-LT accuracy, ltlab vs reference + seed methods
#   bash benchmarks/gpu_check.sh          # all three, in that order
# Each part has its own timeout (BENCH_TIMEOUT, PARITY_TIMEOUT seconds) so one slow part cannot eat a
# limited device budget; the most informative configuration runs first.
# Python: $PY, else the project's .venv/bin/python when present, else python3.
# FMNIST_ROOT: folder with the Fashion-MNIST IDX .gz files (default: Debian's /usr/share/datasets/fashion-mnist).
# Exit status: 0 when every part passed, 1 when any part failed (each failure named on stderr),
# 2 for an unknown part, 3 when torch sees no CUDA device (nothing run).
set -u -o pipefail
export PYTHONUNBUFFERED=1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -z ${PY:-} ]]; then
  if [[ -x $HERE/.venv/bin/python ]]; then PY=$HERE/.venv/bin/python; else PY=python3; fi
fi
mkdir -p "${OUT:-.}" && OUT=$(cd "${OUT:-.}" && pwd)
ROOT=${FMNIST_ROOT:-/usr/share/datasets/fashion-mnist}
PART=${1:-all}
case $PART in speed|compile|parity|all) ;; *)
  echo "gpu_check: error: unknown part '$PART'; use speed, compile, parity or nothing (all)" >&2; exit 2;;
esac
cd "$HERE" || exit 1
if ! $PY -c "import sys, torch; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
  echo "gpu_check: error: $PY sees no CUDA device (torch.cuda.is_available() is False); run it on a GPU machine" >&2
  exit 3
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
FAILED=()
bench() {  # one bench_train.py run; its own timeout and log
  local log=$1; shift
  timeout "${BENCH_TIMEOUT:-330}" $PY benchmarks/bench_train.py --device cuda --ref-epochs 10 --workers 8 "$@" 2>&1 \
    | tee "$OUT/$log" || FAILED+=("$log (exit $?)")
}
if [[ $PART == speed || $PART == all ]]; then
  bench bench_cuda_graphs.log --only "ltlab bf16 channels_last compile reduce-overhead"
  bench bench_cuda_eager.log --only "ltlab fp32" reference
fi
if [[ $PART == compile || $PART == all ]]; then
  bench bench_cuda_compile.log --only "ltlab bf16 channels_last compile" "ltlab bf16 channels_last"
fi
if [[ $PART == parity || $PART == all ]]; then
  timeout "${PARITY_TIMEOUT:-200}" $PY benchmarks/parity_fmnist.py --device cuda --epochs 30 --root "$ROOT" \
    --methods gcl ala_drw gala 2>&1 | tee "$OUT/parity_fmnist.log" || FAILED+=("parity_fmnist.log (exit $?)")
fi
if (( ${#FAILED[@]} )); then
  echo "gpu_check: error: ${#FAILED[@]} part(s) failed: ${FAILED[*]} (logs in $OUT)" >&2
  exit 1
fi
echo "gpu_check: every part passed (logs in $OUT)"
