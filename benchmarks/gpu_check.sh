#!/usr/bin/env bash
# The GPU checks of issue 8 in one command (run on a CUDA machine from the repo root; logs to $OUT or ./):
#   speed: 200 epochs of ResNet-32 on a CIFAR-100-LT-sized synthetic set, ltlab fp32 / bf16 / compile vs the
#   reference loop (10 epochs, extrapolated); accuracy: Fashion-MNIST-LT parity and seed-method runs.
# FMNIST_ROOT: folder with the Fashion-MNIST IDX .gz files (default: Debian's /usr/share/datasets/fashion-mnist).
set -u
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
OUT=${OUT:-.}
ROOT=${FMNIST_ROOT:-/usr/share/datasets/fashion-mnist}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
timeout ${BENCH_TIMEOUT:-330} $PY benchmarks/bench_train.py --device cuda --ref-epochs 10 --workers 8 2>&1 | tee "$OUT/bench_cuda.log"
timeout ${PARITY_TIMEOUT:-200} $PY benchmarks/parity_fmnist.py --device cuda --epochs 30 --root "$ROOT" \
  --methods gcl ala_drw gala 2>&1 | tee "$OUT/parity_fmnist.log"
