"""The Xception classifier, the settings that travel with its weights, and the checkpoint format.

A checkpoint is two files side by side: `NAME.pt`, a plain state_dict (loaded with
`weights_only=True`, so it cannot run code), and `NAME.json`, its `ModelSettings`. Every
consumer (training, evaluation, the handler) reads input size, normalization and crop scale
from the settings, never from a constant of its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import types
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from model.errors import CheckpointError


def _pretrainedmodels_xception() -> types.ModuleType:
    """pretrainedmodels' `models/xception.py`, loaded on its own: importing the package runs its
    `__init__`, which builds two ResNeXt-101 networks at import time (+480 MB in every worker)."""
    package = importlib.util.find_spec("pretrainedmodels")
    if package is None or not package.submodule_search_locations:
        raise ImportError("pretrainedmodels is not installed (see requirements.txt)")
    path = Path(package.submodule_search_locations[0], "models", "xception.py")
    spec = importlib.util.spec_from_file_location("model._pretrainedmodels_xception", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


Xception = _pretrainedmodels_xception().Xception

SETTINGS_FORMAT = 1
DEFAULT_CHECKPOINT = Path("checkpoints") / "best.pt"  # what training writes, `make archive` packs
FEATURE_WIDTH = 2048  # Xception's pooled feature size


# pretrainedmodels' Xception, input to output (its ReLUs hold no weights).
XCEPTION_MODULES = (
    *("conv1", "bn1", "conv2", "bn2"),
    *(f"block{number}" for number in range(1, 13)),
    *("conv3", "bn3", "conv4", "bn4", "last_linear"),
)
# The last convolutional block's output (2048 channels at 1/32 of the input): what Grad-CAM
# explains (model/explain.py).
GRAD_CAM_LAYER = "bn4"


@dataclass(frozen=True)
class ModelSettings:
    """What a consumer must know to feed and read the network; saved beside the weights.

    The head is FaceForensics++'s `TransferModel` head: dropout, then a linear layer to two
    logits; softmax over them, index `fake_index` (1) is the fake probability.
    """

    name: str = "deepfake-xception"
    version: str = "0.0.0"
    architecture: str = "xception"
    input_size: int = 299
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    num_classes: int = 2
    fake_index: int = 1
    dropout: float = 0.5
    face_crop_scale: float = 1.3
    # Where the weights training started from came from (tools/convert_imagenet.py): file,
    # its sha256 and licence note; empty for a network trained from random weights.
    init_source: str = ""
    init_sha256: str = ""
    init_licence: str = ""
    # Temperature scaling of the logits (1: none), fitted on a validation split at training
    # time (training/calibration.py), and how it was fitted.
    temperature: float = 1.0
    calibration: str = ""
    # The served threshold that goes with these scores: fitted with the temperature on people
    # the model never saw (docs/training.md "Calibration"); a server's verdict.threshold, when
    # set, overrides it.
    decision_threshold: float = 0.5
    # Real people's person probabilities on people the model never saw, as the mean and spread
    # of their logits (protocol v2 fits them): how high the most suspicious of several real
    # people tends to score, so a group is not suspicious for its size (model/verdict.py
    # crowd_corrected). None: no correction.
    real_person_logit: tuple[float, float] | None = None
    format: int = SETTINGS_FORMAT

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise CheckpointError(f"temperature must be positive, got {self.temperature}")
        if not 0.0 <= self.decision_threshold <= 1.0:
            raise CheckpointError(
                f"decision_threshold must lie in [0, 1], got {self.decision_threshold}"
            )
        if not is_real_person_logit(self.real_person_logit):
            raise CheckpointError(
                f"real_person_logit must be (mean, spread > 0), got {self.real_person_logit}"
            )
        if self.architecture != "xception":
            raise CheckpointError(f"unsupported architecture {self.architecture!r}")
        if self.num_classes != 2 or self.fake_index not in (0, 1):
            raise CheckpointError("the head must have 2 classes with fake_index 0 or 1")
        if self.input_size < 71:  # Xception's strides need at least 71 px
            raise CheckpointError(f"input_size must be at least 71 px, got {self.input_size}")
        if self.format != SETTINGS_FORMAT:
            raise CheckpointError(
                f"settings format {self.format} is not the supported {SETTINGS_FORMAT}"
            )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelSettings:
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as error:
            raise CheckpointError(f"settings file is not valid JSON: {error}") from error
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise CheckpointError(f"settings file has unknown keys {unknown}")
        for key in ("mean", "std", "real_person_logit"):
            if fields.get(key) is not None:
                fields[key] = tuple(fields[key])
        return cls(**fields)


def is_real_person_logit(value: tuple[float, float] | None) -> bool:
    """None, or real people's person-logit (mean, spread) with a positive spread."""
    return value is None or (len(value) == 2 and value[1] > 0)


def build_model(settings: ModelSettings) -> nn.Module:
    """Xception (pretrainedmodels' architecture, random weights) with the 2-logit head."""
    network = Xception(num_classes=1000)
    del network.fc  # pretrainedmodels' unused ImageNet layer; `logits()` calls last_linear
    network.last_linear = nn.Sequential(
        nn.Dropout(p=settings.dropout), nn.Linear(FEATURE_WIDTH, settings.num_classes)
    )
    return network


def fake_probabilities(
    network: nn.Module, batch: torch.Tensor, settings: ModelSettings
) -> torch.Tensor:
    """(N,) float32 fake probability for an (N, 3, S, S) normalized batch."""
    return fake_probabilities_from_logits(network(batch), settings)


def fake_probabilities_from_logits(logits: torch.Tensor, settings: ModelSettings) -> torch.Tensor:
    """(N,) float32 fake probability from (N, 2) logits: softmax of the logits over the
    checkpoint's temperature, the fake column."""
    return torch.softmax(logits.float() / settings.temperature, dim=1)[:, settings.fake_index]


def settings_path(weights_path: Path) -> Path:
    return Path(weights_path).with_suffix(".json")


def save_checkpoint(network: nn.Module, settings: ModelSettings, weights_path: Path) -> str:
    """Write `weights_path` (state_dict) and its settings JSON; return the weights' sha256."""
    weights_path = Path(weights_path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    state_dict = {key: value.detach().cpu() for key, value in network.state_dict().items()}
    torch.save(state_dict, weights_path)
    settings_path(weights_path).write_text(settings.to_json())
    return file_sha256(weights_path)


def load_settings(weights_path: Path) -> ModelSettings:
    path = settings_path(weights_path)
    if not path.is_file():
        raise CheckpointError(f"settings file {path} is missing; it must sit beside {weights_path}")
    return ModelSettings.from_json(path.read_text())


def load_checkpoint(weights_path: Path) -> tuple[nn.Module, ModelSettings]:
    """Build the network from the settings file and load the weights; eval mode, on the CPU."""
    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise CheckpointError(f"checkpoint {weights_path} does not exist")
    settings = load_settings(weights_path)
    try:
        state_dict = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad file; all mean the same
        raise CheckpointError(f"cannot read {weights_path} as a state_dict: {error}") from error
    if not isinstance(state_dict, dict):
        raise CheckpointError(
            f"{weights_path} holds a {type(state_dict).__name__}, not a state_dict"
        )
    network = build_model(settings)
    try:
        network.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:  # missing, unexpected or mis-shaped keys, all listed by torch
        raise CheckpointError(
            f"{weights_path} does not fit {settings.architecture}: {error}"
        ) from error
    return network.eval(), settings


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
