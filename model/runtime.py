"""Which engine runs the classifier's forward pass on this CPU, and that engine ready to call.

The network, its weights and `model.pipeline.classify_crops` stay the same; only the callable
that turns a normalized batch into logits changes:

* `torch-fp32`: the network as trained, NCHW (the straightforward path, kept as the baseline);
* `torch-fp32-cl`: channels_last memory format (oneDNN's blocked convolutions);
* `torch-bf16-cl`: channels_last with bf16 autocast, only sensible with native bf16
  (avx512_bf16 / amx_bf16); elsewhere bf16 is emulated and ~10x slower;
* `openvino-fp32`: the same weights converted in memory by OpenVINO (`ov.convert_model`), no
  file written; ~1.9x (160 px) to ~2.6x (299 px) faster than `torch-fp32` on an AVX2-only
  EPYC (README "Performance");
* `openvino-int8`: an OpenVINO model quantized at archive time (`training.quantize`, NNCF
  calibrated on training faces, checked on the validation videos) and shipped in the archive.

`choose_path("auto")` picks from the CPU's flags: bf16 where it is native, else OpenVINO int8
when the archive holds a checked int8 model, else OpenVINO fp32.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model.cpu import autocast, has_native_bf16
from model.network import ModelSettings

PATHS = ("torch-fp32", "torch-fp32-cl", "torch-bf16-cl", "openvino-fp32", "openvino-int8")
BASELINE_PATH = "torch-fp32"
INT8_MODEL_NAME = "classifier-int8.xml"  # in the archive, beside its weights classifier-int8.bin


@dataclass(frozen=True)
class InferencePath:
    name: str  # one of PATHS

    @property
    def runtime(self) -> str:
        return self.name.split("-")[0]

    @property
    def precision(self) -> str:
        return self.name.split("-")[1]


def choose_path(
    requested: str, flags: frozenset[str] | None = None, int8_available: bool = False
) -> InferencePath:
    """`requested` as is, or for "auto" the fastest path measured for this kind of CPU."""
    if requested == "auto":
        if has_native_bf16(flags):
            return InferencePath("torch-bf16-cl")
        return InferencePath("openvino-int8" if int8_available else "openvino-fp32")
    if requested not in PATHS:
        raise ValueError(f"inference path must be auto or one of {PATHS}, got {requested!r}")
    return InferencePath(requested)


class TorchClassifier(nn.Module):
    """The torch network behind the classifier interface: logits for a batch, in fp32."""

    def __init__(self, network: nn.Module, path: InferencePath) -> None:
        super().__init__()
        self.channels_last = path.name.endswith("-cl")
        self.precision = path.precision
        self.network = (
            network.to(memory_format=torch.channels_last) if self.channels_last else network
        )

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(self.precision):
            return self.network(batch).float()

    def set_threads(self, threads: int) -> None:
        torch.set_num_threads(threads)


def convert_to_openvino(network: nn.Module, settings: ModelSettings) -> Any:
    """The torch network as an `openvino.Model` taking (N, 3, S, S) batches of any N."""
    import openvino as ov  # imported here: only the OpenVINO paths need it

    size = settings.input_size
    example = torch.zeros(1, 3, size, size)
    # OpenVINO traces with torch.jit, which torch now flags as deprecated on every call.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`torch.jit.trace", FutureWarning)
        model = ov.convert_model(network.eval(), example_input=example)
    model.reshape([-1, 3, size, size])
    return model


class OpenVinoClassifier(nn.Module):
    """An `openvino.Model` compiled for the CPU; called like the torch network."""

    def __init__(self, model: Any, threads: int) -> None:
        super().__init__()
        import openvino as ov

        self._model = model
        self._core = ov.Core()
        self._threads: int | None = None
        self.set_threads(threads)

    def set_threads(self, threads: int) -> None:
        """Recompile for `threads`, 0 for every core (OpenVINO fixes it when it compiles)."""
        if threads != self._threads:
            self._compiled = self._core.compile_model(
                self._model,
                "CPU",
                {
                    "PERFORMANCE_HINT": "LATENCY",
                    "INFERENCE_NUM_THREADS": threads,
                    # Pinned threads lose their core whenever the decoding thread runs there:
                    # unpinned, decode + detect overlapping classification was 1.68 vs 1.83 s
                    # per 1080p clip (AMD EPYC AVX2, 2 cores, int8; fp32 2.43 vs 2.75 s).
                    "ENABLE_CPU_PINNING": False,
                },
            )
            self._threads = threads

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        logits = self._compiled(np.ascontiguousarray(batch.numpy()))[0]
        return torch.from_numpy(np.asarray(logits, dtype=np.float32))


def prepare_classifier(
    network: nn.Module,
    settings: ModelSettings,
    path: InferencePath,
    threads: int,
    int8_model: Path | None = None,
) -> nn.Module:
    """A module whose forward maps a normalized (N, 3, S, S) batch to (N, 2) fp32 logits.
    `int8_model`: the quantized OpenVINO model (.xml) the `openvino-int8` path runs."""
    if path.name == "openvino-int8":
        if int8_model is None:
            raise ValueError(
                "inference path openvino-int8 needs an int8 model: build the archive with "
                '--int8-split (see README "Performance") or choose another path'
            )
        import openvino as ov

        return OpenVinoClassifier(ov.Core().read_model(int8_model), threads)
    if path.runtime == "openvino":
        return OpenVinoClassifier(convert_to_openvino(network, settings), threads)
    classifier = TorchClassifier(network, path)
    classifier.set_threads(threads)
    return classifier
