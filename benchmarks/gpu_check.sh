#!/usr/bin/env bash
# The GPU checks, as one run on a machine with an NVIDIA GPU and torch preinstalled (under
# 5 minutes): the tests marked gpu, then the in-process benchmark (benchmarks/gpu_bench.py:
# latency per clip, videos/min by worker count, decoding, verdicts vs the CPU's fp32).
# TorchServe is not started: GPU machines here have had no Java.
#
#   bash benchmarks/gpu_check.sh            # from the repository root
#
# Python packages the machine lacks come as wheels in .whl/ (git-ignored; made on a machine
# with the registry: see "GPU checks" in docs/testing.md); the sample videos from
# $DEEPFAKE_SAMPLE_DATA (default ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true
PYTHON=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/deepfake-site .whl/*.whl
    export PYTHONPATH=/tmp/deepfake-site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
    | sed 's/^/gpu: nvidia-smi: /'
"$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA GPU'"
"$PYTHON" -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_device.py
"$PYTHON" -m benchmarks.gpu_bench "$@"
