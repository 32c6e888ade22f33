"""Which engine runs the classifier's forward pass on this CPU, and that engine ready to call.

The network, its weights and `model.pipeline.classify_crops` stay the same; only the callable
that turns a normalized batch into logits changes:

* `torch-fp32`: the network as trained, NCHW (the straightforward path, kept as the baseline);
* `torch-fp32-cl`: channels_last memory format (oneDNN's blocked convolutions);
* `torch-bf16-cl`: channels_last with bf16 autocast, only sensible with native bf16
  (avx512_bf16 / amx_bf16); elsewhere bf16 is emulated and ~10x slower;
* `openvino-fp32`: the same weights converted in memory by OpenVINO (`ov.convert_model`), no
  file written, run in fp32 even where OpenVINO would pick bf16 by itself;
* `openvino-bf16`: the same in bf16, only sensible with native bf16 (elsewhere OpenVINO keeps
  fp32, and the worker reports the precision it really got);
* `openvino-int8`: an OpenVINO model quantized at archive time (`training.quantize`, NNCF
  calibrated on training faces, checked on the validation videos) and shipped in the archive;
* `cuda-bf16`, `cuda-fp16`, `cuda-fp32`: the torch network on the worker's GPU (TorchServe's
  `gpu_id`, else cuda:0), channels_last, with bf16 or fp16 autocast.

`candidate_paths("auto")` says what is worth running on this CPU, from its flags: on CPUs
without native bf16 (measured here) OpenVINO int8 when the archive holds a checked int8 model,
else OpenVINO fp32; on CPUs with native bf16 torch bf16, OpenVINO bf16 and int8 when archived,
and `choose_classifier` times them at worker start and keeps the fastest. A worker TorchServe
gave a GPU runs `cuda-<the GPU's native half precision>`. What each path measured on which
machine: docs/performance.md.
A comma-separated list of paths is measured the same way.
"""

from __future__ import annotations

import copy
import functools
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model.cpu import has_native_bf16
from model.device import CPU, autocast, cuda_device_count, cuda_half
from model.network import ModelSettings

PATHS = (
    "torch-fp32",
    "torch-fp32-cl",
    "torch-bf16-cl",
    "openvino-fp32",
    "openvino-bf16",
    "openvino-int8",
    "cuda-fp32",
    "cuda-fp16",
    "cuda-bf16",
)
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


def candidate_paths(
    requested: str,
    flags: frozenset[str] | None = None,
    int8_available: bool = False,
    gpu: torch.device | None = None,
    bf16_supported: bool | None = None,
) -> tuple[InferencePath, ...]:
    """The paths to try for `requested`: "auto" (the worker's `gpu` when it has one, else what
    suits this CPU, see the module's doc), one path, or a comma-separated list of paths. More
    than one: measured at worker start."""
    if requested == "auto" and gpu is not None:
        return (InferencePath(f"cuda-{cuda_half(gpu, bf16_supported)}"),)
    if requested == "auto":
        int8 = ("openvino-int8",) if int8_available else ()
        if has_native_bf16(flags):
            return tuple(map(InferencePath, (*int8, "openvino-bf16", "torch-bf16-cl")))
        return (InferencePath(int8[0] if int8 else "openvino-fp32"),)
    names = tuple(dict.fromkeys(name.strip() for name in requested.split(",")))
    unknown = [name for name in names if name not in PATHS]
    if unknown or not names:
        raise ValueError(
            f"inference path must be auto, one of {PATHS} or a comma-separated list of them, "
            f"got {requested!r}"
        )
    return tuple(map(InferencePath, names))


class TorchClassifier(nn.Module):
    """The torch network behind the classifier interface: a CPU batch in, its fp32 logits
    back on the CPU, whichever device computes them."""

    def __init__(self, network: nn.Module, path: InferencePath, device: torch.device = CPU) -> None:
        super().__init__()
        self.device = device
        self.channels_last = path.name.endswith("-cl") or device.type == "cuda"
        self.precision = path.precision
        # A copy: `Module.to` converts in place, and the caller's network (other paths timed
        # beside this one, Grad-CAM on the CPU) must stay as it was.
        self.network = (
            copy.deepcopy(network).to(device, memory_format=torch.channels_last)
            if self.channels_last
            else network
        )

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device, non_blocking=True)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(self.precision, self.device.type):
            return self.network(batch).float().cpu()

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


def compile_for_cpu(model: Any, threads: int, precision: str = "fp32") -> Any:
    """`model` compiled for this CPU with `threads` (0: every core), in `precision` ("fp32" or
    "bf16"; a quantized model's layers left in float run in it), said explicitly: on CPUs with
    native bf16 OpenVINO would run an fp32 model in bf16 by default."""
    return _openvino_core().compile_model(
        model,
        "CPU",
        {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads,
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            # Pinned threads lose their core whenever the decoding thread runs there
            # (measured: docs/performance.md).
            "ENABLE_CPU_PINNING": False,
        },
    )


@functools.cache
def _openvino_core() -> Any:
    """One OpenVINO runtime per process (imported here: only the OpenVINO paths need it)."""
    import openvino as ov

    return ov.Core()


class OpenVinoClassifier(nn.Module):
    """An `openvino.Model` compiled for the CPU; called like the torch network. `precision`:
    "fp32" or "bf16" for the inference precision of a float model, "int8" for a quantized one
    (its layers left in float run in fp32, as the int8 check measured them)."""

    device = CPU

    def __init__(self, model: Any, threads: int, precision: str = "fp32") -> None:
        super().__init__()
        self._model = model
        self._requested = precision
        self._threads: int | None = None
        self.set_threads(threads)

    @property
    def precision(self) -> str:
        """What the compiled model runs in: OpenVINO keeps fp32 where bf16 is not native."""
        if self._requested == "int8":
            return "int8"
        import openvino as ov

        compiled = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        return "bf16" if compiled == ov.Type.bf16 else "fp32"

    @property
    def threads(self) -> int:
        """The threads the compiled model runs on, as OpenVINO reports them."""
        return int(self._compiled.get_property("INFERENCE_NUM_THREADS"))

    def set_threads(self, threads: int) -> None:
        """Recompile for `threads`, 0 for every core (OpenVINO fixes it when it compiles)."""
        if threads != self._threads:
            self._compiled = compile_for_cpu(self._model, threads, self._requested)
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
    gpu: torch.device | None = None,
) -> nn.Module:
    """A module whose forward maps a normalized (N, 3, S, S) batch to (N, 2) fp32 logits and
    whose `precision` says what it computes in. `int8_model`: the quantized OpenVINO model
    (.xml) the `openvino-int8` path runs; `gpu`: the CUDA device of the `cuda-*` paths."""
    if path.name == "openvino-int8":
        if int8_model is None:
            raise ValueError(
                "inference path openvino-int8 needs an int8 model: build the archive with "
                "--int8-split (docs/deployment.md) or choose another path"
            )
        return OpenVinoClassifier(_openvino_core().read_model(int8_model), threads, "int8")
    if path.runtime == "openvino":
        return OpenVinoClassifier(convert_to_openvino(network, settings), threads, path.precision)
    device = CPU
    if path.runtime == "cuda":
        if gpu is None and cuda_device_count() == 0:
            raise ValueError(f"inference path {path.name} needs a CUDA GPU; none is visible here")
        device = gpu or torch.device("cuda", 0)
    classifier = TorchClassifier(network, path, device)
    classifier.set_threads(threads)
    return classifier


@dataclass
class ChosenClassifier:
    """The classifier a worker serves with, and how its path was chosen: "configured" (one
    path named), "cpu flags" (auto with one candidate) or "measured" (timed at start)."""

    path: InferencePath
    classifier: nn.Module
    chosen_by: str
    images_per_s: dict[str, float] = field(default_factory=dict)  # per path, when measured


def choose_classifier(
    requested: str,
    network: nn.Module,
    settings: ModelSettings,
    threads: int,
    example: torch.Tensor,
    int8_model: Path | None = None,
    flags: frozenset[str] | None = None,
    rounds: int = 3,
    gpu: torch.device | None = None,
) -> ChosenClassifier:
    """Build the candidate paths for `requested`, each warmed up on `example` (a normalized
    micro-batch). With several, time `rounds` forwards of each, interleaved so a busy moment
    hits them alike, and keep the one with the shortest median; the others are let go."""
    candidates = candidate_paths(requested, flags, int8_model is not None, gpu)
    builds = {}
    for path in candidates:
        classifier = prepare_classifier(network, settings, path, threads, int8_model, gpu)
        _timed_forward(classifier, example)  # warm-up: first-call allocations, JIT kernels
        builds[path] = classifier
    if len(candidates) == 1:
        path = candidates[0]
        how = "configured" if requested != "auto" else "gpu" if gpu else "cpu flags"
        return ChosenClassifier(path, builds[path], how)
    seconds: dict[InferencePath, list[float]] = {path: [] for path in candidates}
    for _ in range(rounds):
        for path, classifier in builds.items():
            seconds[path].append(_timed_forward(classifier, example))
    rates = {path.name: len(example) / statistics.median(seconds[path]) for path in candidates}
    fastest = max(candidates, key=lambda path: rates[path.name])
    return ChosenClassifier(fastest, builds[fastest], "measured", rates)


def _timed_forward(
    classifier: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor
) -> float:
    started = time.perf_counter()
    with torch.inference_mode():
        classifier(batch)
    return time.perf_counter() - started
