# deepfake-serve: TorchServe with the deepfake bundle from model_store/.
# First version from the foundation issue; the deployment issue lints it with hadolint and
# checks its pins. Build: docker build -t deepfake-serve .   (needs `make archive` first)
FROM python:3.11-slim-bookworm

# CPU-only torch wheels keep the image small; pass the CUDA index to build for GPUs.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 serve
WORKDIR /home/serve/app

COPY requirements.txt .
RUN pip install --no-cache-dir --extra-index-url "${TORCH_INDEX_URL}" -r requirements.txt

COPY --chown=serve:serve . .
USER serve

# Inside the container TorchServe must listen on all interfaces; publish the ports on
# 127.0.0.1 only: docker run -p 127.0.0.1:8080:8080 -p 127.0.0.1:8081:8081 deepfake-serve
ENV TS_INFERENCE_ADDRESS=http://0.0.0.0:8080 \
    TS_MANAGEMENT_ADDRESS=http://0.0.0.0:8081 \
    TS_METRICS_ADDRESS=http://0.0.0.0:8082
EXPOSE 8080 8081 8082
# config.properties loads model_store/deepfake.mar at start (load_models).
CMD ["torchserve", "--start", "--foreground", "--ncs", "--ts-config", "config.properties"]
