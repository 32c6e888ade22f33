"""A training recipe: `TrainConfig`, from a YAML file and command-line flags, checked once.

`python -m training.train --config training/demo.yaml --epochs 2` reads the YAML, then lets
each flag (one per field, dashes for underscores) override it; nested `augment` and
`self_blend` settings come from the YAML only. An unknown key or a value out of range is a
RecipeError naming it.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml

from model.network import XCEPTION_MODULES
from training.augment import AugmentConfig
from training.dataset import FAKE_SOURCES
from training.sbi import SelfBlendConfig

CHECKPOINT_SELECTIONS = ("best", "last")


class RecipeError(ValueError):
    """A recipe key or value training does not accept; the message names it."""


@dataclass
class TrainConfig:
    """Defaults finish on a 2-core CPU; raise epochs and input size for a real dataset."""

    split: str = "images/split.json"
    image_dir: str | None = None  # default: the split file's image_dir
    output_dir: str = "checkpoints"
    name: str = "deepfake-xception"
    version: str = "0.1.0"
    input_size: int = 160
    epochs: int = 3
    batch_size: int = 16
    eval_batch_size: int = 32
    lr: float = 1e-3  # the head's; the backbone's is lr * backbone_lr_scale
    backbone_lr_scale: float = 1.0
    freeze_backbone_epochs: int = 0  # first epochs train the head alone
    # The first module that trains after those epochs; those before keep their ImageNet weights
    # (fewer weights to over-fit a few people with, and no backward pass through them).
    train_from: str = "conv1"
    weight_decay: float = 1e-2
    fake_source: str = "both"  # "videos", "sbi" (real videos only) or "both"
    # A real crop and its self-blended twin side by side in a batch (one process; torchrun
    # shards crops with DistributedSampler instead).
    paired_batches: bool = False
    max_steps_per_epoch: int | None = None
    time_budget_s: float | None = None  # stop training (then validate) when exceeded
    init: str | None = None  # checkpoint to start from (any of this project's format)
    resume: bool = False
    seed: int = 0
    # DataLoader processes decoding and self-blending crops. None: 0 on the CPU (they would
    # take cores from the network), on a GPU enough to keep it fed (data_workers).
    workers: int | None = None
    precision: str = "auto"  # "auto": bf16 only where the CPU has it natively
    aggregation: str = "mean"
    # "best": the epoch with the best validation ranking; "last": the last epoch, for a recipe
    # whose length was fixed by cross-validation (validation of a few videos is a weak guide).
    checkpoint_selection: str = "best"
    # "temperature": fit one on the kept checkpoint's validation faces (training/calibration.py)
    # and store it in the checkpoint; "none": leave the scores as trained (cross-validation
    # folds, whose validation faces are the held-out people being measured).
    calibration: str = "temperature"
    # With no validation split to fit one on: the temperature `make crossval` fitted on this
    # recipe's out-of-fold faces (its calibration_temperature), stored in the checkpoint.
    recipe_temperature: float | None = None
    # The served threshold `make crossval` fitted for this recipe on held-out people (its
    # fitted_threshold: false alarms at most 10%), stored in the checkpoint.
    recipe_threshold: float | None = None
    augment: dict | None = None  # AugmentConfig fields (YAML only)
    self_blend: dict | None = None  # SelfBlendConfig fields (YAML only)
    experiment: str = "deepfake-serve"
    registered_model: str | None = "deepfake"  # models:/deepfake/<version>


def get_args_parser(description: str = "Train the detector.") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", type=Path, help="YAML file of TrainConfig fields")
    for field in dataclasses.fields(TrainConfig):
        if field.type == "dict | None":
            continue  # nested settings come from the YAML file
        flag = "--" + field.name.replace("_", "-")
        if field.type == "bool":
            parser.add_argument(flag, action="store_true", default=None)
        else:
            kind = {"int": int, "float": float, "int | None": int, "float | None": float}
            parser.add_argument(flag, type=kind.get(field.type, str), default=None)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values: dict = {}
    if args.config:
        values.update(yaml.safe_load(args.config.read_text()) or {})
    known = {field.name for field in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise RecipeError(f"unknown keys in {args.config}: {unknown}")
    values.update({k: v for k, v in vars(args).items() if k in known and v is not None})
    config = TrainConfig(**values)
    if config.fake_source not in FAKE_SOURCES:
        raise RecipeError(f"--fake-source must be one of {FAKE_SOURCES}")
    if config.train_from not in XCEPTION_MODULES:
        raise RecipeError(f"train_from must be one of {XCEPTION_MODULES}")
    if config.calibration not in ("temperature", "none"):
        raise RecipeError(f"calibration must be temperature or none, got {config.calibration}")
    if config.recipe_temperature is not None and config.recipe_temperature <= 0:
        raise RecipeError(f"recipe_temperature must be > 0, got {config.recipe_temperature}")
    if config.recipe_threshold is not None and not 0 <= config.recipe_threshold <= 1:
        raise RecipeError(f"recipe_threshold must lie in [0, 1], got {config.recipe_threshold}")
    if config.checkpoint_selection not in CHECKPOINT_SELECTIONS:
        raise RecipeError(f"checkpoint_selection must be one of {CHECKPOINT_SELECTIONS}")
    for key, settings_class in (("augment", AugmentConfig), ("self_blend", SelfBlendConfig)):
        known = {field.name for field in dataclasses.fields(settings_class)}
        unknown = sorted(set(getattr(config, key) or {}) - known)
        if unknown:
            raise RecipeError(f"unknown keys under {key}: {unknown} (known: {sorted(known)})")
    return config


def augment_config(config: TrainConfig) -> AugmentConfig:
    return AugmentConfig(**_tuples(config.augment or {}))


def self_blend_config(config: TrainConfig) -> SelfBlendConfig:
    return SelfBlendConfig(**_tuples(config.self_blend or {}))


def _tuples(values: dict) -> dict:
    """YAML lists -> the tuples the frozen settings classes hold."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
