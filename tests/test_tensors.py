"""The one crops-to-batch function training and serving share."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.faces import DetectorConfig, make_detector
from model.network import ModelSettings
from model.pipeline import extract_faces
from model.tensors import crops_to_batch
from model.video import SamplingConfig


def test_batch_shape_dtype_and_normalization():
    settings = ModelSettings()
    black = np.zeros((299, 299, 3), np.uint8)
    white = np.full((299, 299, 3), 255, np.uint8)
    batch = crops_to_batch([black, white], settings)
    assert batch.shape == (2, 3, 299, 299) and batch.dtype == torch.float32
    assert torch.all(batch[0] == -1.0) and torch.all(batch[1] == 1.0)


def test_channels_stay_in_rgb_order():
    crop = np.zeros((299, 299, 3), np.uint8)
    crop[..., 0] = 255  # pure red
    batch = crops_to_batch([crop], ModelSettings())
    assert batch[0, 0].min() == 1.0 and batch[0, 1].max() == -1.0 and batch[0, 2].max() == -1.0


def test_other_sizes_are_resized_to_the_settings_input():
    settings = ModelSettings(input_size=160)
    crops = [np.zeros((299, 299, 3), np.uint8), np.zeros((90, 90, 3), np.uint8)]
    assert crops_to_batch(crops, settings).shape == (2, 3, 160, 160)


def test_bad_crops_are_refused():
    with pytest.raises(ValueError, match="at least one"):
        crops_to_batch([], ModelSettings())
    with pytest.raises(ValueError, match="uint8 RGB"):
        crops_to_batch([np.zeros((299, 299), np.uint8)], ModelSettings())


def test_same_tensors_from_a_path_and_from_its_bytes(one_face_video):
    settings = ModelSettings()
    detector = make_detector(DetectorConfig())
    sampling = SamplingConfig.exactly_every(20)
    from_path = extract_faces(one_face_video.path, sampling, detector, settings)
    from_bytes = extract_faces(one_face_video.path.read_bytes(), sampling, detector, settings)
    assert from_path.face_count == from_bytes.face_count > 0
    torch.testing.assert_close(
        crops_to_batch([f.crop for f in from_path.faces], settings),
        crops_to_batch([f.crop for f in from_bytes.faces], settings),
        rtol=0,
        atol=0,
    )
