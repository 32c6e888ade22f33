#!/usr/bin/env bash
# The GPU checks, as one run on a machine with an NVIDIA GPU and torch preinstalled (under
# 5 minutes): the tests marked gpu, then the in-process benchmark (benchmarks/gpu_bench.py:
# latency per clip, videos/min by worker count, decoding, verdicts vs the CPU's fp32).
# TorchServe is not started: GPU machines here have had no Java.
#
#   bash benchmarks/gpu_check.sh            # from the repository root
#
# Python packages the machine lacks come as wheels in .device/wheels/, the sample videos from
# .device/data/ (both laid out by benchmarks/gpu_carry.sh, git-ignored, carried with the run),
# else from $DEEPFAKE_SAMPLE_DATA (default ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true
PYTHON=${PYTHON:-python3}
if compgen -G ".device/wheels/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/deepfake-site .device/wheels/*.whl
    export PYTHONPATH=/tmp/deepfake-site${PYTHONPATH:+:$PYTHONPATH}
fi
if [ -d .device/data ]; then export DEEPFAKE_SAMPLE_DATA=${DEEPFAKE_SAMPLE_DATA:-$PWD/.device/data}; fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
    | sed 's/^/gpu: nvidia-smi: /'
"$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA GPU'"
"$PYTHON" -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_device.py
"$PYTHON" -m benchmarks.gpu_bench "$@"
