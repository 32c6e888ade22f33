"""Where the network runs, and in what precision: this CPU, or the CUDA device TorchServe gives
a worker (its `gpu_id`), each in the half precision it computes natively.

Nothing here needs CUDA to be importable or testable: with no GPU every choice is the CPU's.
"""

from __future__ import annotations

import logging

import torch

from model.cpu import has_native_bf16

logger = logging.getLogger(__name__)

CPU = torch.device("cpu")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
HALF_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cuda_device_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def worker_gpu(gpu_id: int | str | None, devices: int | None = None) -> torch.device | None:
    """The CUDA device TorchServe assigned this worker (`system_properties["gpu_id"]`, set only
    where the server has `number_of_gpu` > 0), or None: none assigned, or CUDA absent here
    (logged, and the worker serves on the CPU rather than not at all)."""
    if gpu_id is None:
        return None
    devices = cuda_device_count() if devices is None else devices
    index = int(gpu_id)
    if devices == 0:
        logger.warning("deepfake: TorchServe gave gpu_id %s but CUDA sees no GPU: CPU", index)
        return None
    if not 0 <= index < devices:
        raise ValueError(f"gpu_id {index} is not one of the {devices} CUDA devices here")
    return torch.device("cuda", index)


def cuda_half(device: torch.device, bf16_supported: bool | None = None) -> str:
    """bf16 on GPUs that compute it natively (compute capability 8.0+: A100, H100, L4), else
    fp16 (T4, V100)."""
    if bf16_supported is None:
        with torch.cuda.device(device):
            bf16_supported = torch.cuda.is_bf16_supported(including_emulation=False)
    return "bf16" if bf16_supported else "fp16"


def resolve_precision(requested: str, device: torch.device = CPU) -> str:
    """ "auto" becomes the device's native half precision (the CPU's bf16 where it has it,
    else fp32); fp16 is a CUDA precision (the CPU emulates it slowly)."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if device.type == "cuda":
        return cuda_half(device) if requested == "auto" else requested
    if requested == "fp16":
        raise ValueError("precision fp16 needs a CUDA device; on the CPU use bf16 or fp32")
    if requested == "auto":
        return "bf16" if has_native_bf16() else "fp32"
    return requested


def autocast(precision: str, device_type: str = "cpu") -> torch.autocast:
    """Autocast to bf16 or fp16 on `device_type`; a no-op context for "fp32"."""
    dtype = HALF_DTYPES.get(precision, torch.bfloat16)
    return torch.autocast(device_type, dtype=dtype, enabled=precision in HALF_DTYPES)


def device_name(device: torch.device) -> str:
    """ "cpu", or "cuda:0 (NVIDIA H200)": what the response's model block names."""
    if device.type != "cuda":
        return "cpu"
    return f"{device} ({torch.cuda.get_device_name(device)})"
