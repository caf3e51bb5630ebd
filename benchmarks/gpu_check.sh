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
# FMNIST_ROOT: folder with the Fashion-MNIST IDX .gz files (default: Debian's /usr/share/datasets/fashion-mnist).
set -u
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
OUT=${OUT:-.}
ROOT=${FMNIST_ROOT:-/usr/share/datasets/fashion-mnist}
PART=${1:-all}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
bench() {  # one bench_train.py run; its own timeout and log
  local log=$1; shift
  timeout "${BENCH_TIMEOUT:-330}" $PY benchmarks/bench_train.py --device cuda --ref-epochs 10 --workers 8 "$@" 2>&1 \
    | tee "$OUT/$log"
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
    --methods gcl ala_drw gala 2>&1 | tee "$OUT/parity_fmnist.log"
fi
