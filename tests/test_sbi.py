"""Self-blended images: each step alone, then the whole recipe."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from training.sbi import (
    blend,
    deform_mask,
    hull_mask,
    perturb_colour,
    perturb_frequency,
    random_affine,
    self_blend,
    soften_mask,
)


@pytest.fixture(scope="module")
def face_and_landmarks(extracted_images):
    image_dir, _ = extracted_images
    folder = image_dir / "real" / "a_still_grace_hopper"
    face = json.loads((folder / "faces.json").read_text())["frames"][0]["faces"][0]
    image = cv2.cvtColor(cv2.imread(str(folder / face["file"])), cv2.COLOR_BGR2RGB)
    return image, np.array(face["landmarks"], np.float32)


@pytest.mark.parametrize("seed", range(8))
def test_self_blend_changes_only_the_masked_region(face_and_landmarks, seed):
    face, landmarks = face_and_landmarks
    result = self_blend(face, landmarks, np.random.default_rng(seed))
    assert result.image.shape == face.shape and result.image.dtype == np.uint8
    assert result.mask.min() >= 0.0 and result.mask.max() <= 1.0
    outside = result.mask == 0
    assert outside.mean() > 0.2  # background and hair stay untouched
    np.testing.assert_array_equal(result.image[outside], face[outside])
    inside = result.mask > 0.2
    assert inside.mean() > 0.1
    changed = np.abs(result.image.astype(int) - face.astype(int)).sum(axis=2) > 0
    assert changed[inside].mean() > 0.5


def test_hull_mask_covers_the_landmarks(face_and_landmarks):
    face, landmarks = face_and_landmarks
    mask = hull_mask(*face.shape[:2], landmarks)
    xs, ys = np.round(landmarks).astype(int).T
    last = face.shape[0] - 1
    assert mask[ys.clip(0, last), xs.clip(0, last)].mean() > 0.95
    assert mask[0, 0] == 0 and set(np.unique(mask)) == {0.0, 1.0}


def test_deform_and_soften_keep_the_mask_in_range(face_and_landmarks):
    face, landmarks = face_and_landmarks
    mask = hull_mask(*face.shape[:2], landmarks)
    rng = np.random.default_rng(0)
    deformed = deform_mask(mask, rng, max_morph=0.05)
    assert abs(deformed.sum() - mask.sum()) > 0  # grown or shrunk
    soft = soften_mask(deformed, rng)
    assert soft.max() == pytest.approx(1.0) and soft.min() == 0.0
    assert ((soft > 0) & (soft < 1)).any()  # a soft edge
    assert not soften_mask(np.zeros_like(mask), rng).any()


def test_perturbations_change_the_picture_not_its_shape(face_and_landmarks):
    face, _ = face_and_landmarks
    rng = np.random.default_rng(1)
    for perturbed in (perturb_colour(face, rng), perturb_frequency(face, rng)):
        assert perturbed.shape == face.shape and perturbed.dtype == np.uint8
        assert np.abs(perturbed.astype(int) - face.astype(int)).mean() > 1


def test_affine_moves_image_and_mask_together(face_and_landmarks):
    face, landmarks = face_and_landmarks
    mask = hull_mask(*face.shape[:2], landmarks)
    warped, warped_mask = random_affine(face, mask, np.random.default_rng(2), 0.05, (1.0, 1.0))
    assert warped.shape == face.shape and warped_mask.shape == mask.shape
    shift = np.array(np.nonzero(warped_mask)).mean(axis=1) - np.array(np.nonzero(mask)).mean(axis=1)
    assert np.abs(shift).max() > 0.5


def test_blend_weights_source_by_mask():
    source = np.full((4, 4, 3), 200, np.uint8)
    target = np.full((4, 4, 3), 100, np.uint8)
    mask = np.array([[0, 0.25, 0.5, 1.0]] * 4, np.float32)
    assert blend(source, target, mask)[0, :, 0].tolist() == [100, 125, 150, 200]


def test_perturbing_the_target_keeps_the_blended_region_as_it_was(face_and_landmarks):
    from training.sbi import SelfBlendConfig

    face, landmarks = face_and_landmarks
    still = SelfBlendConfig(perturb_target=1.0, max_shift=0.0, scale_range=(1.0, 1.0))
    result = self_blend(face, landmarks, np.random.default_rng(3), still)
    inside, outside = result.mask >= 0.999, result.mask == 0
    assert inside.mean() > 0.1
    # The unperturbed face is now the source: fully blended pixels are the original's, and the
    # surroundings carry the perturbation.
    np.testing.assert_array_equal(result.image[inside], face[inside])
    assert np.abs(result.image[outside].astype(int) - face[outside]).mean() > 1


def test_elastic_deformation_bends_the_outline_but_keeps_the_mask(face_and_landmarks):
    from training.sbi import elastic_deform

    face, landmarks = face_and_landmarks
    mask = hull_mask(*face.shape[:2], landmarks)
    rng = np.random.default_rng(0)
    bent = elastic_deform(mask, rng, alpha=0.03, sigma=0.03)
    assert bent.shape == mask.shape and bent.min() >= 0 and bent.max() <= 1
    changed = np.abs(bent - mask) > 0.5
    assert 0 < changed.mean() < 0.1  # only near the outline
    assert abs(bent.sum() / mask.sum() - 1) < 0.2
    np.testing.assert_array_equal(elastic_deform(mask, rng, alpha=0.0, sigma=0.03), mask)


def test_downscaling_blurs_a_crop_without_changing_its_size(face_and_landmarks):
    from training.augment import AugmentConfig, augment

    face, _ = face_and_landmarks
    only_downscale = AugmentConfig(flip=0, jpeg=0, blur=0, noise=0, colour=0, downscale=1.0)
    smaller = augment(face, np.random.default_rng(0), only_downscale)
    assert smaller.shape == face.shape and smaller.dtype == np.uint8
    laplacian = [
        cv2.Laplacian(cv2.cvtColor(i, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()
        for i in (face, smaller)
    ]
    assert laplacian[1] < laplacian[0] * 0.8  # fine detail lost


def test_h264_recompression_blocks_the_face_more_at_higher_crf(face_and_landmarks):
    from training.augment import AugmentConfig, augment, h264_roundtrip

    face, _ = face_and_landmarks
    odd = face[:223, :221]  # 4:2:0 needs even sides: odd ones are padded and cut back
    errors = []
    for crf in (18, 30, 44):
        coded = h264_roundtrip(odd, crf)
        assert coded.shape == odd.shape and coded.dtype == np.uint8
        errors.append(np.abs(coded.astype(int) - odd.astype(int)).mean())
    assert 0 < errors[0] < errors[1] < errors[2]
    np.testing.assert_array_equal(h264_roundtrip(odd, 30), h264_roundtrip(odd, 30))
    only_h264 = AugmentConfig(flip=0, jpeg=0, blur=0, noise=0, colour=0, h264=1.0)
    assert not np.array_equal(augment(face, np.random.default_rng(0), only_h264), face)
    with pytest.raises(ValueError, match="h264_crf"):
        AugmentConfig(h264_crf=(40, 23))


def test_poisson_blending_matches_the_boundary_and_keeps_the_source_texture(face_and_landmarks):
    from training.sbi import SelfBlendConfig, poisson_blend

    face, landmarks = face_and_landmarks
    mask = hull_mask(*face.shape[:2], landmarks)
    brighter = np.clip(face.astype(int) + 40, 0, 255).astype(np.uint8)
    cloned = poisson_blend(brighter, face, mask)
    inside = mask > 0.5
    outside = ~inside
    np.testing.assert_array_equal(cloned.image[outside], face[outside])  # target untouched
    # Alpha blending would make the region 40 brighter; in the gradient domain the offset is
    # absorbed by the target's boundary, so the blended face stays near the target's colour.
    shift = np.abs(cloned.image[inside].astype(int) - face[inside].astype(int)).mean()
    assert shift < 10
    assert poisson_blend(face, face, np.zeros(face.shape[:2], np.float32)) is None
    always = SelfBlendConfig(poisson_blend=1.0)
    blended = self_blend(face, landmarks, np.random.default_rng(0), always)
    assert set(np.unique(blended.mask)) <= {0.0, 1.0} and blended.mask.any()


def _first_face(image_dir, folder_name):
    folder = image_dir / "real" / folder_name
    face = json.loads((folder / "faces.json").read_text())["frames"][0]["faces"][0]
    image = cv2.cvtColor(cv2.imread(str(folder / face["file"])), cv2.COLOR_BGR2RGB)
    return folder / face["file"], image, np.array(face["landmarks"], np.float32)


def test_landmark_alignment_recovers_a_similarity_transform(face_and_landmarks):
    from training.sbi import landmark_alignment

    _, landmarks = face_and_landmarks
    angle = np.deg2rad(12)
    rotation = 1.1 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = (landmarks @ rotation.T + (5.0, -3.0)).astype(np.float32)
    matrix, residual = landmark_alignment(moved, landmarks)
    np.testing.assert_allclose(moved @ matrix[:, :2].T + matrix[:, 2], landmarks, atol=0.05)
    assert residual < 1e-3
    jittered = landmarks + np.random.default_rng(0).normal(0, 3, landmarks.shape)
    assert landmark_alignment(jittered.astype(np.float32), landmarks)[1] > residual


def test_other_face_blend_pastes_the_donor_in_the_targets_colours(extracted_images):
    from training.sbi import Donor, SelfBlendConfig, other_face_source

    image_dir, _ = extracted_images
    _, face, landmarks = _first_face(image_dir, "a_still_grace_hopper")
    _, donor_image, donor_landmarks = _first_face(image_dir, "a_wolfgang_c1")
    donor = Donor(donor_image, donor_landmarks)
    source = other_face_source(donor, face, landmarks)
    hull = hull_mask(*face.shape[:2], landmarks) > 0.5
    lab = [cv2.cvtColor(x, cv2.COLOR_RGB2LAB)[hull].astype(float) for x in (source, face)]
    np.testing.assert_allclose(lab[0].mean(axis=0), lab[1].mean(axis=0), atol=3)
    assert np.abs(lab[0] - lab[1]).mean() > 5  # another face, not this one recoloured

    exact = SelfBlendConfig(
        blend_ratios=(1.0,), max_shift=0.0, scale_range=(1.0, 1.0), other_face=1.0
    )
    result = self_blend(face, landmarks, np.random.default_rng(0), exact, donor)
    outside, full = result.mask == 0, result.mask > 0.999
    np.testing.assert_array_equal(result.image[outside], face[outside])
    assert full.mean() > 0.1
    np.testing.assert_array_equal(result.image[full], source[full])


def test_crops_take_their_donor_from_another_group(extracted_images):
    from model.network import ModelSettings
    from training.dataset import REAL_CLASS, CropItem, FaceCrops
    from training.sbi import SelfBlendConfig

    image_dir, _ = extracted_images
    path_a, _, landmarks_a = _first_face(image_dir, "a_still_grace_hopper")
    path_b, _, landmarks_b = _first_face(image_dir, "a_wolfgang_c1")
    real_a = CropItem(str(path_a), REAL_CLASS, "a", 0, landmarks_a, group="hopper")
    real_b = CropItem(str(path_b), REAL_CLASS, "b", 0, landmarks_b, group="wolfgang")
    blended_a = CropItem(str(path_a), 1, "a#self-blended", 0, landmarks_a, True, "hopper")
    settings = ModelSettings(input_size=96)
    crops = FaceCrops(
        [real_a, real_b, blended_a], settings, True, blend_config=SelfBlendConfig(other_face=1.0)
    )
    for seed in range(4):
        donor = crops.donor_for(blended_a, np.random.default_rng(seed))
        np.testing.assert_array_equal(donor.landmarks, landmarks_b)
    alone = FaceCrops([real_a, blended_a], settings, True)
    assert alone.donor_for(blended_a, np.random.default_rng(0)) is None
    # With other faces on, the blended crop differs from the self-blend of the same seed.
    self_only = FaceCrops([real_a, real_b, blended_a], settings, True)
    assert not np.array_equal(crops[2][0], self_only[2][0])


def test_raised_brows_take_the_forehead_into_the_hull(face_and_landmarks):
    from training.sbi import raise_brows

    face, landmarks = face_and_landmarks
    height, width = face.shape[:2]
    hull = hull_mask(height, width, landmarks)
    brow_top = int(np.floor(landmarks[17:27, 1].min()))
    assert not hull[: brow_top - 1].any()
    low, high = (hull_mask(height, width, raise_brows(landmarks, a)) for a in (0.5, 2.0))
    assert (low >= hull).all() and (high >= low).all()
    assert 0 < low[: brow_top - 1].sum() < high[: brow_top - 1].sum()
    np.testing.assert_array_equal(raise_brows(landmarks, 0.0), landmarks)
    np.testing.assert_array_equal(raise_brows(landmarks, 1.0)[:17], landmarks[:17])


def test_blend_region_reaches_the_forehead_only_when_asked(face_and_landmarks):
    from training.sbi import SelfBlendConfig, blend_region

    face, landmarks = face_and_landmarks
    height, width = face.shape[:2]
    hull = hull_mask(height, width, landmarks)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(
        blend_region(height, width, landmarks, rng, SelfBlendConfig()), hull
    )
    assert rng.bit_generator.state == np.random.default_rng(0).bit_generator.state
    always = SelfBlendConfig(forehead=1.0)
    areas = [blend_region(height, width, landmarks, rng, always).sum() for _ in range(20)]
    assert min(areas) > hull.sum() and len(set(areas)) > 10  # raised by a drawn amount
    five = landmarks[[36, 45, 30, 48, 54]]  # not the 68-point scheme: the hull, always
    np.testing.assert_array_equal(
        blend_region(height, width, five, rng, always), hull_mask(height, width, five)
    )


@pytest.mark.parametrize("seed", range(4))
def test_self_blend_up_the_forehead_changes_only_its_region(face_and_landmarks, seed):
    from training.sbi import SelfBlendConfig

    face, landmarks = face_and_landmarks
    config = SelfBlendConfig(forehead=1.0)
    result = self_blend(face, landmarks, np.random.default_rng(seed), config)
    outside = result.mask == 0
    assert 0.2 < outside.mean() < 0.9
    np.testing.assert_array_equal(result.image[outside], face[outside])
