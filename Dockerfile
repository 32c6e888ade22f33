# deepfake-serve: TorchServe serving model_store/deepfake.mar, CPU-only torch by default.
#
#   make archive                       # the image serves the bundle from model_store/
#   docker build -t deepfake-serve .
#   docker run --rm -p 127.0.0.1:8080-8082:8080-8082 deepfake-serve
#
# Build args: TORCH_INDEX_URL selects the torch/torchvision build (CUDA: .../whl/cu128);
# SOURCE=git with GIT_URL and GIT_REF (branch, tag or commit) clones the code instead of
# copying this folder; the .mar still comes from this folder's model_store/ (it is built, not
# committed). Linted by hadolint in `make test` (tests/test_dockerfile.py), which also checks
# that every package installed here is the one pinned in requirements.txt.

# Debian 12: its openjdk-17 is the Java TorchServe 0.12 is tested with (Debian 13 has only 21+).
# Python 3.11: the version requirements.txt is verified on.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG SOURCE=context

FROM ${PYTHON_IMAGE} AS source-context
COPY . /src

FROM ${PYTHON_IMAGE} AS source-git
ARG GIT_URL=""
ARG GIT_REF=main
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Fetching one ref by name works for branches, tags and commit ids alike.
RUN test -n "${GIT_URL}" || { echo "SOURCE=git needs --build-arg GIT_URL=<repository>" >&2; exit 1; } \
    && git init --quiet . \
    && git fetch --quiet --depth 1 "${GIT_URL}" "${GIT_REF}" \
    && git checkout --quiet FETCH_HEAD \
    && rm -rf .git
COPY model_store/ /src/model_store/

# A stage chosen by build arg, not an image from a registry: nothing to tag.
# hadolint ignore=DL3006
FROM source-${SOURCE} AS source

FROM ${PYTHON_IMAGE}
# CPU-only wheels leave out the CUDA libraries (the CUDA build's venv is 6.7 GB here).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# libseccomp2: the decoding sandbox's seccomp filter (docs/security.md).
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless libseccomp2 \
    && rm -rf /var/lib/apt/lists/*

# torch and torchvision first, at requirements.txt's versions, from TORCH_INDEX_URL; the second
# install then finds them satisfied (2.14.1+cpu satisfies ==2.14.1) and takes the rest from PyPI.
# Then facenet-pytorch without its (stale) dependency pins: see requirements-nodeps.txt.
COPY requirements.txt requirements-nodeps.txt /tmp/
RUN grep -E '^(torch|torchvision)==' /tmp/requirements.txt > /tmp/torch.txt \
    && pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" -r /tmp/torch.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && pip check \
    && pip install --no-cache-dir --no-deps --require-hashes -r /tmp/requirements-nodeps.txt \
    && rm /tmp/requirements.txt /tmp/requirements-nodeps.txt /tmp/torch.txt

RUN useradd --create-home --uid 10001 serve
WORKDIR /home/serve/app
COPY --from=source --chown=10001:10001 /src .
USER 10001

# Inside the container TorchServe must listen on all interfaces to be reachable through
# published ports; publish them on 127.0.0.1 only (docker run -p 127.0.0.1:...) and put a TLS
# proxy in front before exposing them further (README "Security"). Token authorization stays
# on: the keys are in /home/serve/app/key_file.json (docker exec ... cat key_file.json).
ENV TS_INFERENCE_ADDRESS=http://0.0.0.0:8080 \
    TS_MANAGEMENT_ADDRESS=http://0.0.0.0:8081 \
    TS_METRICS_ADDRESS=http://0.0.0.0:8082 \
    MLFLOW_DISABLE_TELEMETRY=true
EXPOSE 8080 8081 8082

# Healthy only once the model has a READY worker (/ping answers before the model is loaded).
HEALTHCHECK --interval=30s --timeout=10s --start-period=180s --retries=3 \
    CMD ["python", "-m", "client.healthcheck"]

# config.properties loads model_store/deepfake.mar at start (load_models).
CMD ["torchserve", "--start", "--foreground", "--ncs", "--ts-config", "config.properties", "--model-store", "model_store"]
