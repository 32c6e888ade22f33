"""Int8 post-training quantization of the classifier for the `openvino-int8` inference path.

    python -m training.quantize --checkpoint checkpoints/best.pt --split images/split.json \
        --output model_store/int8

The network's depthwise channels are first evened out for per-tensor int8 (`training.equalize`,
exact in fp32); NNCF calibrates the OpenVINO model on face crops of the split's training videos
and puts the layers whose int8 error moves those videos most back to fp32 (accuracy control).
The int8 model is accepted only if, on the validation videos, its video AUC stays within
`max_auc_drop` of the fp32 network's and no video's fake probability moves more than
`max_probability_shift`; `deploy.archive` ships it only then.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model.network import ModelSettings, fake_probabilities_from_logits, load_checkpoint
from model.runtime import (
    INT8_MODEL_NAME,
    OpenVinoClassifier,
    compile_for_cpu,
    convert_to_openvino,
)
from model.schema import add_arguments, parse_command
from model.video import evenly_spaced
from training.data_dir import check_crop_size, load_split
from training.dataset import Collate, FaceCrops, split_items
from training.equalize import equalized
from training.evaluate import all_metrics, evaluate_split
from training.scoring import CropScores, video_probabilities


@dataclass(frozen=True)
class QuantizeConfig:
    calibration_crops: int = 300  # NNCF's default subset size
    max_auc_drop: float = 0.01  # video AUC on the validation split, int8 against fp32
    max_probability_shift: float = 0.02  # per validation video
    aggregation: str = "mean"
    batch_size: int = 4
    threads: int = 0  # OpenVINO threads for the check; 0: every core
    # Accuracy control on the calibration videos (the validation check stays independent):
    # NNCF ranks the quantized layers by how much they move these crops and puts the worst
    # back to fp32, one at a time, until no calibration video moves more than this.
    # 0.015: the demo model met it with 3-4 of its 88 layers back in fp32; at 0.01 NNCF went
    # on ranking the rest (5 min a pass on 2 cores) for a 0.001 gain.
    restore_max_shift: float = 0.015
    max_restored_layers: int = 10  # each costs speed
    ranking_crops: int = 50  # crops NNCF ranks the layers on (the ones int8 moves most)


@dataclass(frozen=True)
class Int8Check:
    """What the int8 model was calibrated on and how it compares with fp32 on validation."""

    calibration_crops: int
    validation_videos: int
    video_auc_fp32: float | None  # None when the validation split lacks a class
    video_auc_int8: float | None
    max_probability_shift: float
    accepted: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def quantize(
    network: nn.Module, settings: ModelSettings, calibration: FaceCrops, config: QuantizeConfig
) -> tuple[Any, int]:
    """(int8 `openvino.Model`, crops used): calibrated on up to `calibration_crops` crops
    spread evenly over the calibration set, then layers put back to fp32 until no calibration
    video's fake probability moves more than `restore_max_shift` from the fp32 network's."""
    import nncf  # only the archive step quantizes; workers never import NNCF
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    if len(calibration) == 0:
        raise ValueError("no calibration crops: the split's train videos have no faces")
    crops = CalibrationCrops(
        calibration,
        settings,
        config,
        compile_for_cpu(convert_to_openvino(network, settings), config.threads),
    )
    # The same function in fp32, its channels evened out for per-tensor int8 (training.equalize).
    fp32_model = convert_to_openvino(equalized(network, crops.batches()), settings)
    int8_model = nncf.quantize_with_accuracy_control(
        fp32_model,
        nncf.Dataset(crops.positions, crops.to_input),
        nncf.Dataset(crops.positions, crops.to_input),
        crops.agreement,
        max_drop=config.restore_max_shift,
        subset_size=len(crops.positions),
        # Asymmetric activations: a depthwise output is signed and lopsided (on the demo
        # model 0.5.0, quantized whole, equalized: symmetric moved a calibration video 0.21,
        # asymmetric 0.13; with NNCF's quantile ranges then 0.07, docs/deployment.md).
        preset=nncf.QuantizationPreset.MIXED,
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
            max_num_iterations=config.max_restored_layers,
            ranking_subset_size=config.ranking_crops,
            num_ranking_workers=1,
        ),
    )
    return int8_model, len(crops.positions)


class CalibrationCrops:
    """The crops NNCF calibrates and ranks layers on (each decoded once: NNCF reads a crop
    once per layer it ranks), and its validation metric: how far a compiled model moves their
    videos' fake probabilities from those of `fp32` (the network before quantization)."""

    def __init__(
        self, calibration: FaceCrops, settings: ModelSettings, config: QuantizeConfig, fp32: Any
    ) -> None:
        self._calibration, self._settings, self._config = calibration, settings, config
        self._indices = evenly_spaced(len(calibration), config.calibration_crops)
        self._collate = Collate(settings)
        self._crops = [calibration.items[i] for i in self._indices]
        self.positions = list(range(len(self._indices)))
        self.to_input = functools.cache(self._input)
        self._reference = self._probabilities(fp32, self.positions)

    def agreement(self, compiled: Any, items: Iterable[int]) -> tuple[float, list[float]]:
        """NNCF's metric, higher is better: 1 - the largest move of a video's fake
        probability from fp32 over these crops; per crop, 1 - its own move."""
        items = list(items)
        probabilities = self._probabilities(compiled, items)
        reference = self._reference[items]
        worst = _largest_move(self._videos(items, reference), self._videos(items, probabilities))
        return 1.0 - worst, [1.0 - abs(float(m)) for m in probabilities - reference]

    def batches(self, size: int = 16) -> Iterator[torch.Tensor]:
        """The calibration crops as network input, `size` at a time."""
        return (torch.from_numpy(batch) for batch in self._inputs(self.positions, size))

    def _inputs(self, items: list[int], size: int) -> Iterator[np.ndarray]:
        """These crops as network input, `size` at a time."""
        for start in range(0, len(items), size):
            yield np.concatenate([self.to_input(p) for p in items[start : start + size]])

    def _input(self, position: int) -> np.ndarray:
        batch, _, _ = self._collate([self._calibration[self._indices[position]]])
        return batch.numpy()

    def _probabilities(self, compiled: Any, items: list[int]) -> np.ndarray:
        """Fake probability per crop, `batch_size` crops per call of the compiled model."""
        probabilities = []
        for batch in self._inputs(items, self._config.batch_size):
            logits = torch.from_numpy(np.asarray(compiled(batch)[0], dtype=np.float32))
            probabilities.append(fake_probabilities_from_logits(logits, self._settings).numpy())
        return np.concatenate(probabilities) if probabilities else np.zeros(0, np.float32)

    def _videos(
        self, items: list[int], probabilities: np.ndarray
    ) -> dict[str, tuple[int, float | None]]:
        """These crops' video probabilities, aggregated as the check aggregates them."""
        picked = [self._crops[p] for p in items]
        scores = CropScores(
            video_ids=[crop.video_id for crop in picked],
            frame_indices=[crop.frame_index for crop in picked],
            labels=np.array([crop.label for crop in picked], dtype=np.int64),
            probabilities=probabilities,
            loss=0.0,
        )
        return video_probabilities(scores, self._config.aggregation)


def check_int8(
    network: nn.Module,
    settings: ModelSettings,
    int8_model: Any,
    split_file: Path,
    calibration_crops: int,
    config: QuantizeConfig,
) -> Int8Check:
    """Score the validation split with the fp32 network and the int8 model and compare."""
    fp32 = evaluate_split(split_file, "val", network, settings, config.batch_size)
    int8_classifier = OpenVinoClassifier(int8_model, config.threads, "int8")  # as served
    int8 = evaluate_split(split_file, "val", int8_classifier, settings, config.batch_size)
    fp32_videos = video_probabilities(fp32.scores, config.aggregation)
    int8_videos = video_probabilities(int8.scores, config.aggregation)
    shift = _largest_move(fp32_videos, int8_videos)
    auc_fp32 = _auc(all_metrics(fp32, config.aggregation))
    auc_int8 = _auc(all_metrics(int8, config.aggregation))
    problems = []
    if not fp32_videos:
        problems.append("the validation split has no video with faces to check on")
    if auc_fp32 is not None and auc_int8 is not None and auc_fp32 - auc_int8 > config.max_auc_drop:
        problems.append(
            f"video AUC drops from {auc_fp32:.4f} to {auc_int8:.4f} "
            f"(more than {config.max_auc_drop})"
        )
    if shift > config.max_probability_shift:
        problems.append(
            f"a validation video's fake probability moves by {shift:.4f} "
            f"(more than {config.max_probability_shift})"
        )
    return Int8Check(
        calibration_crops=calibration_crops,
        validation_videos=len(fp32_videos),
        video_auc_fp32=auc_fp32,
        video_auc_int8=auc_int8,
        max_probability_shift=float(shift),
        accepted=not problems,
        reason="; ".join(problems) or "within tolerance",
    )


def build_int8(
    checkpoint: Path, split_file: Path, output_dir: Path, config: QuantizeConfig = QuantizeConfig()
) -> Int8Check:
    """Quantize, check, and save `INT8_MODEL_NAME` (+ .bin) in `output_dir` when accepted."""
    import openvino as ov

    network, settings = load_checkpoint(checkpoint)
    split = load_split(split_file)
    check_crop_size(split, settings.input_size)
    items = split_items(split, "train", split["image_dir"], fake_source="videos")
    int8_model, used = quantize(network, settings, FaceCrops(items, settings, train=False), config)
    check = check_int8(network, settings, int8_model, split_file, used, config)
    if check.accepted:
        output_dir.mkdir(parents=True, exist_ok=True)
        ov.save_model(int8_model, output_dir / INT8_MODEL_NAME, compress_to_fp16=False)
    return check


def _largest_move(
    fp32_videos: dict[str, tuple[int, float | None]],
    int8_videos: dict[str, tuple[int, float | None]],
) -> float:
    """The largest change of a video's fake probability from fp32 to int8."""
    return max((abs(fp32_videos[v][1] - int8_videos[v][1]) for v in fp32_videos), default=0.0)


def _auc(metrics: dict[str, float]) -> float | None:
    auc = metrics.get("video_auc", float("nan"))
    return None if math.isnan(auc) else float(auc)


@dataclass(frozen=True)
class QuantizeCommand:
    """`python -m training.quantize`'s settings, a flag per field."""

    checkpoint: Path
    split: Path = field(metadata={"help": "split.json of training.data_dir"})
    output: Path = field(metadata={"help": "folder for the int8 model"})
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser, QuantizeCommand)
    command = parse_command(parser, QuantizeCommand, argv)
    check = build_int8(command.checkpoint, command.split, command.output, command.quantize)
    print(json.dumps(check.as_dict(), indent=2))
    return 0 if check.accepted else 1


if __name__ == "__main__":
    sys.exit(main())
