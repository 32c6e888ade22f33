"""Turn face crops into the normalized batch the network takes; training and serving share it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from model.faces import resize_square
from model.network import ModelSettings


def crops_to_batch(face_crops: Sequence[np.ndarray], settings: ModelSettings) -> torch.Tensor:
    """(N, 3, S, S) float32, normalized by the settings' mean and std, from (H, W, 3) uint8 RGB
    crops; crops of another size are resized to S = `settings.input_size` first."""
    if len(face_crops) == 0:
        raise ValueError("crops_to_batch needs at least one face crop")
    size = settings.input_size
    stacked = np.stack([resize_square(_as_rgb_uint8(crop), size) for crop in face_crops])
    batch = torch.from_numpy(stacked).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(settings.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(settings.std, dtype=torch.float32).view(1, 3, 1, 1)
    return batch.sub_(mean).div_(std).contiguous()


def _as_rgb_uint8(crop: np.ndarray) -> np.ndarray:
    if crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[2] != 3:
        raise ValueError(f"a face crop must be (H, W, 3) uint8 RGB, got {crop.shape} {crop.dtype}")
    return crop
