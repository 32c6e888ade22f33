"""A training recipe: `TrainConfig`, from a YAML file and command-line flags, checked once.

`python -m training.train --config training/demo.yaml --epochs 2` reads the YAML, then lets
each flag (one per leaf field, dashes for underscores: `--epochs`, `--perturb-target` for
`self_blend.perturb_target`) override it (model/schema.py). An unknown key, a wrong type or a
value out of range is a ConfigError naming it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from model.network import XCEPTION_MODULES, is_real_person_logit
from model.schema import ConfigError, add_arguments, from_arguments, from_mapping
from training.augment import AugmentConfig
from training.dataset import FAKE_SOURCES
from training.sbi import SelfBlendConfig

CHECKPOINT_SELECTIONS = ("best", "last")


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
    # The swap methods (the split's `method`) of the fake videos trained on; None: every one.
    fake_methods: tuple[str, ...] | None = None
    # A real crop and its self-blended twin side by side in a batch (one process; torchrun
    # shards crops with DistributedSampler instead).
    paired_batches: bool = False
    # Weight of a ranking loss on each real crop and its twin in a batch (training/loop.py
    # TrainingLoss): the blend must score above the same face unblended. Needs paired_batches.
    twin_ranking: float = 0.0
    # Weight of Face X-ray's boundary loss (training/boundary.py): a 1x1 head on a middle block
    # learns where each self-blend's edge runs, and that a real crop has none. 0: none.
    boundary_loss: float = 0.0
    # The kept weights: the mean of the weights after every step of the last N epochs
    # (dense weight averaging, SWAD: Cha et al., NeurIPS 2021: flatter minima that hold up
    # better on unseen domains), batch-norm statistics averaged alike; 0: the last step's.
    weight_average_epochs: int = 0
    # Sharpness-aware minimization's radius (training/sharpness.py; the SBI paper trains with
    # it): each step's gradient taken at the weights moved this far uphill. 0: plain steps.
    # Twice the work per step.
    sharpness_rho: float = 0.0
    # Only the last N epochs take SAM steps (None: every epoch). SAM late in training finds
    # most of the flatness SAM from the start does (Zhou et al., "Sharpness-Aware Minimization
    # Efficiently Selects Flatter Minima Late in Training", ICLR 2025), for a fraction of the work.
    sharpness_epochs: int | None = None
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
    # Real people's person probabilities on held-out people, as their logits' mean and spread
    # (`make crossval`'s real_person_logit_*), stored in the checkpoint: the server's crowd
    # correction of person_max (model/verdict.py crowd_corrected).
    recipe_real_person_logit: tuple[float, float] | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    self_blend: SelfBlendConfig = field(default_factory=SelfBlendConfig)
    experiment: str = "deepfake-serve"
    registered_model: str | None = "deepfake"  # models:/deepfake/<version>

    def __post_init__(self) -> None:
        if self.fake_source not in FAKE_SOURCES:
            raise ConfigError(f"fake_source must be one of {FAKE_SOURCES}, got {self.fake_source}")
        if self.fake_methods is not None and self.fake_source == "sbi":
            raise ConfigError("fake_methods picks fake videos: set fake_source to videos or both")
        if self.train_from not in XCEPTION_MODULES:
            raise ConfigError(f"train_from must be one of {XCEPTION_MODULES}")
        if self.calibration not in ("temperature", "none"):
            raise ConfigError(f"calibration must be temperature or none, got {self.calibration}")
        if self.recipe_temperature is not None and self.recipe_temperature <= 0:
            raise ConfigError(f"recipe_temperature must be > 0, got {self.recipe_temperature}")
        if self.recipe_threshold is not None and not 0 <= self.recipe_threshold <= 1:
            raise ConfigError(f"recipe_threshold must lie in [0, 1], got {self.recipe_threshold}")
        if self.twin_ranking < 0:
            raise ConfigError(f"twin_ranking must be >= 0, got {self.twin_ranking}")
        if self.boundary_loss < 0:
            raise ConfigError(f"boundary_loss must be >= 0, got {self.boundary_loss}")
        trainable_epochs = self.epochs - self.freeze_backbone_epochs
        if not 0 <= self.weight_average_epochs <= trainable_epochs:
            raise ConfigError(
                f"weight_average_epochs must lie in [0, {trainable_epochs}] (epochs after the "
                f"head-only ones), got {self.weight_average_epochs}"
            )
        if self.sharpness_rho < 0:
            raise ConfigError(f"sharpness_rho must be >= 0, got {self.sharpness_rho}")
        if self.sharpness_epochs is not None and not 1 <= self.sharpness_epochs <= self.epochs:
            raise ConfigError(
                f"sharpness_epochs must lie in [1, {self.epochs}] (or be unset: every epoch), "
                f"got {self.sharpness_epochs}"
            )
        if self.twin_ranking > 0 and not self.paired_batches:
            raise ConfigError("twin_ranking compares a crop with its twin: set paired_batches")
        if not is_real_person_logit(self.recipe_real_person_logit):
            raise ConfigError(
                "recipe_real_person_logit must be [mean, spread > 0], "
                f"got {self.recipe_real_person_logit}"
            )
        if self.checkpoint_selection not in CHECKPOINT_SELECTIONS:
            raise ConfigError(f"checkpoint_selection must be one of {CHECKPOINT_SELECTIONS}")


def get_args_parser(description: str = "Train the detector.") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", type=Path, help="YAML file of TrainConfig fields")
    add_arguments(parser, TrainConfig)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The YAML file's recipe (or the defaults), with the flags that were given on top."""
    recipe = yaml.safe_load(args.config.read_text()) if args.config else None
    base = from_mapping(TrainConfig, recipe or {}, str(args.config or "recipe"))
    return from_arguments(args, TrainConfig, base)
