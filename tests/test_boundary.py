"""Face X-ray's boundary supervision: the target maps, the head on a middle block, and the
crops that carry them."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from model.network import ModelSettings, build_model
from training.augment import AugmentConfig
from training.boundary import BOUNDARY_BLOCK, BoundaryHead, boundary_map
from training.dataset import FAKE_CLASS, REAL_CLASS, CropItem, FaceCrops


def _disc(soft: bool) -> np.ndarray:
    mask = np.zeros((96, 96), np.float32)
    cv2.circle(mask, (48, 48), 30, 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), 4) * 0.8 if soft else mask


def test_boundary_maps_run_along_the_blends_edge_and_are_empty_for_a_real_crop():
    np.testing.assert_array_equal(boundary_map(None, 8, 6), np.zeros((8, 6), np.float32))
    for soft in (True, False):  # a hard mask (a Poisson blend's region) is given an edge too
        edge = boundary_map(_disc(soft), 96, 96)
        assert edge.dtype == np.float32 and edge.min() >= 0 and edge.max() <= 1
        assert edge[48, 48] < 0.05 and edge[2, 2] < 0.05  # deep inside and far outside
        assert edge[48, 18] > 0.8  # on the circle
    # The blend ratio scales the mask, not where its edge is.
    np.testing.assert_allclose(
        boundary_map(_disc(True) * 0.5, 96, 96), boundary_map(_disc(True), 96, 96), atol=1e-6
    )


def test_the_head_reads_a_middle_block_and_leaves_out_crops_without_a_target():
    network = build_model(ModelSettings(input_size=96))
    head = BoundaryHead(network)
    network.train()
    network(torch.randn(3, 3, 96, 96))
    targets = torch.zeros(3, 96, 96)
    targets[0, 20:40, 20:40] = 1.0
    targets[2] = float("nan")  # a real swap: nothing known about where it was blended
    loss = head.loss(targets)
    assert torch.isfinite(loss)
    loss.backward()
    assert head.predict.weight.grad.abs().sum() > 0
    block = getattr(network, BOUNDARY_BLOCK)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())
    # The NaN crop adds nothing: the loss is the one over the other two.
    network(torch.randn(3, 3, 96, 96))
    features = head._features
    logits = head.predict(features.float())[:2]
    pooled = torch.nn.functional.adaptive_avg_pool2d(targets[:2].unsqueeze(1), logits.shape[-2:])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, pooled)
    assert head.loss(targets).item() == pytest.approx(expected.item())
    # The head is the trainer's: the network's own weights, which the server loads, are unchanged.
    assert not any(key.startswith("predict") for key in network.state_dict())


def test_training_crops_carry_their_boundary_flipped_with_them(extracted_images):
    image_dir, _ = extracted_images
    folder = image_dir / "real" / "a_still_grace_hopper"
    face = json.loads((folder / "faces.json").read_text())["frames"][0]["faces"][0]
    landmarks = np.array(face["landmarks"], np.float32)
    path = str(folder / face["file"])
    size = cv2.imread(path).shape[0]
    real = CropItem(path, REAL_CLASS, "v", 0, landmarks)
    blended = CropItem(path, FAKE_CLASS, "v#self-blended", 0, landmarks, self_blended=True)
    swap = CropItem(path, FAKE_CLASS, "swap", 0, landmarks)
    settings = ModelSettings(input_size=size)
    only_flip = AugmentConfig(flip=1.0, jpeg=0.0, blur=0.0, noise=0.0, colour=0.0)
    no_flip = AugmentConfig(flip=0.0, jpeg=0.0, blur=0.0, noise=0.0, colour=0.0)
    items = [real, blended, swap]
    flipped = FaceCrops(items, settings, True, augment_config=only_flip, boundary_targets=True)
    upright = FaceCrops(items, settings, True, augment_config=no_flip, boundary_targets=True)

    image, label, index, target = upright[0]
    assert (label, index) == (REAL_CLASS, 0) and not target.any()
    image, _, _, target = upright[1]
    assert target.shape == (size, size) and target.max() > 0.9
    mirrored_image, _, _, mirrored_target = flipped[1]
    np.testing.assert_array_equal(mirrored_image, image[:, ::-1])
    np.testing.assert_array_equal(mirrored_target, target[:, ::-1])
    assert np.isnan(upright[2][3]).all()
    # Without boundary targets the items are as before, and so are the draws.
    plain = FaceCrops(items, settings, True, augment_config=no_flip)
    assert len(plain[1]) == 3
    np.testing.assert_array_equal(plain[1][0], image)
