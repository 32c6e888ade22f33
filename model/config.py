"""The one configuration schema: a tree of typed dataclasses, each default defined once.

The model config's `deepfake:` block (handler/model-config.yaml) is this tree in YAML, read
strictly by `load_config` (an unknown key or a wrong type is an error naming it); the command
line tools' flags come from the same fields (`add_arguments`, `from_arguments`). What travels
with the weights (input size, normalization, crop scale) is not here: it is the checkpoint's
`ModelSettings` (model/network.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from model.credentials import CredentialsConfig
from model.faces import DetectorConfig
from model.people import TrackingConfig
from model.quality import QualityConfig
from model.runtime import candidate_paths
from model.sandbox_child import SandboxConfig
from model.schema import ConfigError, from_mapping
from model.verdict import VerdictConfig
from model.video import SamplingConfig, VideoLimits


@dataclass(frozen=True)
class EngineConfig:
    """How the worker runs the network on this machine (model/runtime.py)."""

    # "auto" (by the CPU, docs/configuration.md), one path, or a comma-separated list timed
    # at start.
    inference_path: str = "auto"
    torch_threads: int | str = "auto"  # auto: usable cores shared evenly among the workers
    crops_per_batch: int = 4  # face crops per forward pass (not TorchServe's batchSize)
    cuda_crops_per_batch: int = 64  # the same on a GPU, which wants far larger batches
    # Let the decoder skip unsampled frames that no other frame refers to (same pixels).
    skip_unsampled_frames: bool = True
    # Decode and detect in two more threads while the network classifies (2+ cores only).
    overlap_stages: bool = True
    # glibc gives buffers of 1 MB or more back to the OS when freed; OpenVINO paths only.
    return_large_buffers_to_os: bool = True

    def __post_init__(self) -> None:
        candidate_paths(self.inference_path)  # a ValueError naming the choices if unknown
        if self.torch_threads != "auto" and (
            isinstance(self.torch_threads, str) or self.torch_threads < 1
        ):
            raise ConfigError(f"torch_threads must be auto or at least 1, got {self.torch_threads}")
        for name in ("crops_per_batch", "cuda_crops_per_batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class ExplanationConfig:
    faces: int = 3  # Grad-CAM for this many most suspicious faces unless a request asks
    max_faces: int = 8  # the most a request may ask for

    def __post_init__(self) -> None:
        if not 1 <= self.faces <= self.max_faces:
            raise ConfigError(f"explanations need 1 <= faces <= max_faces, got {self}")


@dataclass(frozen=True)
class RequestBounds:
    max_interval: int = 1000  # the largest `interval` option a request may send


@dataclass(frozen=True)
class ServiceConfig:
    """Everything about scoring a video that is not in the checkpoint."""

    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    verdict: VerdictConfig = field(default_factory=VerdictConfig)
    people: TrackingConfig = field(default_factory=TrackingConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    explanations: ExplanationConfig = field(default_factory=ExplanationConfig)
    requests: RequestBounds = field(default_factory=RequestBounds)
    limits: VideoLimits = field(default_factory=VideoLimits)  # what one uploaded video may cost
    credentials: CredentialsConfig = field(default_factory=CredentialsConfig)  # C2PA reading
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)  # where uploads are decoded


def load_config(model_yaml: Mapping[str, Any] | None) -> ServiceConfig:
    """The `deepfake:` block of a model config (already parsed YAML); missing keys keep their
    defaults, unknown keys and wrong types are a ConfigError naming them."""
    return from_mapping(ServiceConfig, (model_yaml or {}).get("deepfake") or {}, "deepfake")
