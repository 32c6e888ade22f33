#!/usr/bin/env bash
# Lays out .device/ (git-ignored) for a run of benchmarks/gpu_check.sh on a GPU machine that
# has torch but none of this project's other packages and no registry: the wheels it lacks
# (for its Python 3.12) and a transfer copy of the sample videos. Run here, where pip reaches
# the registry, then on the device tool:
#   run(command="bash benchmarks/gpu_check.sh", carry=[".device"], timeout_s=420)
# Not carried (they do not fit the 64 MB a run may carry, and the GPU checks do not need them):
# face-recognition-models (100 MB; the checks run without face descriptors), c2pa-python
# (16 MB; without Content Credentials), mlflow (its GPU training test is skipped without it).
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=${PIP:-.venv/bin/python -m pip}
rm -rf .device && mkdir -p .device/wheels
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
$PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .device/wheels av==18.1.0 dlib-bin==20.0.1.post1 munch==4.0.0 captum==0.9.0 \
    facenet-pytorch==2.6.0  # the detector's second look (2 MB, pure Python)
$PIP wheel -q --no-deps -w .device/wheels pretrainedmodels==0.7.4  # an sdist on PyPI
cp -r "${DEEPFAKE_SAMPLE_DATA:-../shared/data}" .device/data  # for the transfer only
du -sh .device/wheels .device/data .device
