"""Where the network runs and in what precision, decided the same way on any machine: these run
without CUDA (GPU-only checks are in test_gpu.py, marked gpu)."""

from __future__ import annotations

import logging

import pytest
import torch

from model.config import ConfigError, EngineConfig
from model.device import CPU, autocast, cuda_half, resolve_precision, worker_gpu
from model.network import ModelSettings, build_model
from model.runtime import InferencePath, candidate_paths, prepare_classifier
from training.distributed import Processes

WITHOUT_CUDA = pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the machine without CUDA"
)


def test_a_worker_takes_the_gpu_torchserve_assigned_when_cuda_sees_it(caplog):
    assert worker_gpu(None, devices=4) is None  # no gpu_id: the model has no GPUs
    assert worker_gpu(1, devices=2) == torch.device("cuda", 1)
    assert worker_gpu("0", devices=1) == torch.device("cuda", 0)  # as TorchServe passes it
    with caplog.at_level(logging.WARNING, "model.device"):
        assert worker_gpu(0, devices=0) is None  # a gpu_id where CUDA sees none: the CPU
    assert "CUDA sees no GPU" in caplog.text
    with pytest.raises(ValueError, match="gpu_id 2 is not one of the 2 CUDA devices"):
        worker_gpu(2, devices=2)


def test_auto_runs_on_the_gpu_in_its_native_half_precision():
    gpu = torch.device("cuda", 0)
    avx2 = frozenset({"avx2"})
    assert cuda_half(gpu, bf16_supported=True) == "bf16"  # A100, H100, L4
    assert cuda_half(gpu, bf16_supported=False) == "fp16"  # T4, V100
    paths = candidate_paths("auto", avx2, int8_available=True, gpu=gpu, bf16_supported=False)
    assert [path.name for path in paths] == ["cuda-fp16"]
    # Without a GPU the CPU's choice stands; a configured path is kept wherever it runs.
    assert [path.name for path in candidate_paths("auto", avx2)] == ["openvino-fp32"]
    assert [p.name for p in candidate_paths("openvino-fp32", avx2, gpu=gpu)] == ["openvino-fp32"]
    assert EngineConfig(inference_path="cuda-bf16").inference_path == "cuda-bf16"
    with pytest.raises(ConfigError, match="cuda_crops_per_batch must be at least 1"):
        EngineConfig(cuda_crops_per_batch=0)


@WITHOUT_CUDA
def test_a_cuda_path_without_cuda_is_refused_with_the_reason():
    network = build_model(ModelSettings(input_size=96)).eval()
    with pytest.raises(ValueError, match="cuda-fp16 needs a CUDA GPU; none is visible here"):
        prepare_classifier(network, ModelSettings(input_size=96), InferencePath("cuda-fp16"), 1)


def test_precision_follows_the_device():
    gpu = torch.device("cuda", 0)
    assert resolve_precision("fp16", gpu) == "fp16" and resolve_precision("fp32", gpu) == "fp32"
    assert resolve_precision("auto", CPU) in ("fp32", "bf16")  # by the CPU's flags
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", CPU)
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp8", CPU)
    with autocast("bf16", "cpu"):
        product = torch.ones(4, 4) @ torch.ones(4, 4)
    assert product.dtype == torch.bfloat16
    with autocast("fp32", "cpu"):
        assert (torch.ones(4, 4) @ torch.ones(4, 4)).dtype == torch.float32


def test_training_feeds_a_gpu_from_loader_processes_and_leaves_the_cpu_to_the_network():
    assert Processes().data_workers(None) == 0  # on the CPU they would take its cores
    assert Processes().data_workers(3) == 3  # as configured
    assert 1 <= Processes(device=torch.device("cuda", 0)).data_workers(None) <= 8
