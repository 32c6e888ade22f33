"""Self-blended pseudo-fakes from real faces (Shiohara & Yamasaki, "Detecting Deepfakes with
Self-Blended Images", CVPR 2022), written from the paper's description.

A copy of the face (the source) is perturbed in colour and frequency and shifted by a small
affine warp, then blended back into the unchanged face (the target) through a soft mask drawn
from the convex hull of its landmarks, at a random blend ratio. The result carries the traces
of a face swap (a blending boundary, colour and sharpness mismatch, slight misalignment) with
no identity change, which teaches a detector what generalises across manipulation methods.
Every step is a pure function of its inputs and a numpy Generator, so each can be tested alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class SelfBlendConfig:
    blend_ratios: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)  # the paper's choices
    max_shift: float = 0.03  # affine translation, share of the crop side
    scale_range: tuple[float, float] = (0.95, 1.05)  # affine scale of the source
    max_mask_morph: float = 0.04  # erode/dilate the hull by up to this share of the side
    # The paper perturbs the source or, as often, the target: the fake's two regions then differ
    # whichever side was changed, and the unchanged face is not always the outer one.
    perturb_target: float = 0.0  # probability of perturbing the target instead (paper: 0.5)
    elastic_alpha: float = 0.0  # mask elastic deformation, share of the side (0: none)
    elastic_sigma: float = 0.025  # smoothness of that deformation, share of the side
    # Probability of blending in the gradient domain (Poisson image editing, cv2.seamlessClone)
    # instead of by alpha: colours then match at the boundary, as in swaps made that way, and
    # only texture, sharpness and misalignment are left to give the blend away.
    poisson_blend: float = 0.0
    # Probability that the source is another person's face, aligned on the landmarks and matched
    # in colour (Face X-ray's blended images, Li et al., CVPR 2020), instead of this face
    # perturbed: the inner face then differs from its surroundings in identity too, as in a swap.
    other_face: float = 0.0
    # Probability that the blended region reaches up the forehead (the brows raised, then the
    # hull), as in the SBI paper's masks from 81 landmarks and its `extended` shape, instead of
    # the 68 landmarks' hull, whose edge never crosses the forehead. (Its two other shapes,
    # DeepFaceLab's full face and the component hulls, are that hull again to within a few
    # pixels when drawn from 68 points.)
    forehead: float = 0.0
    forehead_raise: tuple[float, float] = (0.5, 2.0)  # brow-to-eye distances the brows go up


@dataclass(frozen=True)
class SelfBlended:
    image: np.ndarray  # (H, W, 3) uint8: the pseudo-fake
    mask: np.ndarray  # (H, W) float32 in [0, 1]: how much of the source each pixel took


@dataclass(frozen=True)
class Donor:
    """Another person's real face crop and its landmarks, the source of an other-face blend."""

    image: np.ndarray  # (H, W, 3) uint8
    landmarks: np.ndarray  # (N, 2) float32, the same points as the target's


def hull_mask(height: int, width: int, landmarks: np.ndarray) -> np.ndarray:
    """(H, W) float32, 1 inside the convex hull of the (N, 2) landmarks, else 0."""
    mask = np.zeros((height, width), np.uint8)
    hull = cv2.convexHull(np.round(landmarks).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1)
    return mask.astype(np.float32)


def raise_brows(landmarks: np.ndarray, amount: float) -> np.ndarray:
    """The 68 (iBUG 300-W) landmarks with each brow point (17-26) moved away from the eye line
    below it by `amount` times its distance from that line, so a hull through them takes in
    the forehead (0.5 is the `extended` mask of the SBI paper's code; its 81-point hull reaches
    higher, toward the hairline)."""
    raised = landmarks.astype(np.float32).copy()
    outer_right = (landmarks[36] + (landmarks[0] + landmarks[36]) / 2) / 2
    outer_left = (landmarks[45] + (landmarks[16] + landmarks[45]) / 2) / 2
    below_right = np.stack([outer_right, *landmarks[36:40]])
    below_left = np.stack([*landmarks[42:46], outer_left])
    raised[17:22] += (landmarks[17:22] - below_right) * amount
    raised[22:27] += (landmarks[22:27] - below_left) * amount
    return raised


def blend_region(
    height: int,
    width: int,
    landmarks: np.ndarray,
    rng: np.random.Generator,
    config: SelfBlendConfig,
) -> np.ndarray:
    """The region to blend before it is deformed: the landmarks' convex hull or, with
    probability `config.forehead` (68 landmarks only), the hull with the brows raised by an
    amount drawn from `config.forehead_raise`. Nothing is drawn from `rng` when `forehead` is
    0, so recipes without it repeat bit for bit."""
    if config.forehead <= 0 or len(landmarks) != 68 or rng.random() >= config.forehead:
        return hull_mask(height, width, landmarks)
    return hull_mask(height, width, raise_brows(landmarks, rng.uniform(*config.forehead_raise)))


def deform_mask(mask: np.ndarray, rng: np.random.Generator, max_morph: float) -> np.ndarray:
    """Grow or shrink the mask by a random margin, so the boundary is not always on the hull."""
    side = max(mask.shape)
    radius = int(rng.integers(0, max(1, round(max_morph * side)) + 1))
    if radius == 0:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    morph = cv2.dilate if rng.random() < 0.5 else cv2.erode
    return morph(mask, kernel)


def elastic_deform(
    mask: np.ndarray, rng: np.random.Generator, alpha: float, sigma: float
) -> np.ndarray:
    """Bend the mask's outline with a smooth random displacement field (the paper's elastic
    transform): `alpha` and `sigma` are shares of the side, so crops of any size bend alike."""
    if alpha <= 0 or not mask.any():
        return mask
    height, width = mask.shape
    side = max(height, width)
    kernel = _odd(round(6 * sigma * side))
    fields = [
        cv2.GaussianBlur(
            rng.uniform(-1, 1, (height, width)).astype(np.float32), (kernel, kernel), 0
        )
        for _ in range(2)
    ]
    # Normalise each field so alpha is the largest displacement whatever sigma smoothed away.
    dx, dy = (f / max(float(np.abs(f).max()), 1e-6) * alpha * side for f in fields)
    grid_x, grid_y = np.meshgrid(
        np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
    )
    return cv2.remap(mask, grid_x + dx, grid_y + dy, cv2.INTER_LINEAR, borderValue=0)


def soften_mask(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur, keep only the fully covered interior, blur again: a smooth edge inside the hull."""
    if not mask.any():
        return mask
    side = max(mask.shape)
    first = _odd(rng.integers(side // 30, side // 10 + 1))
    blurred = cv2.GaussianBlur(mask, (first, first), 0)
    blurred = np.where(blurred >= blurred.max() - 1e-6, 1.0, 0.0).astype(np.float32)
    second = _odd(rng.integers(side // 20, side // 6 + 1))
    blurred = cv2.GaussianBlur(blurred, (second, second), 0)
    peak = blurred.max()
    return blurred / peak if peak > 0 else blurred


def perturb_colour(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shift hue, saturation, value and each RGB channel; change brightness and contrast."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-5, 5)) % 180
    hsv[..., 1] *= rng.uniform(0.85, 1.15)
    hsv[..., 2] *= rng.uniform(0.85, 1.15)
    shifted = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)
    shifted = shifted.astype(np.float32) + rng.uniform(-20, 20, size=3)
    contrast, brightness = rng.uniform(0.9, 1.1), rng.uniform(-15, 15)
    mean = shifted.mean()
    return np.clip((shifted - mean) * contrast + mean + brightness, 0, 255).astype(np.uint8)


def perturb_frequency(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Either blur by down- and up-scaling or sharpen with an unsharp mask."""
    height, width = image.shape[:2]
    if rng.random() < 0.5:
        factor = rng.uniform(0.4, 0.8)
        small = cv2.resize(
            image, (max(1, round(width * factor)), max(1, round(height * factor))), cv2.INTER_AREA
        )
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    blurred = cv2.GaussianBlur(image, (0, 0), sigmaX=rng.uniform(1.0, 2.5))
    amount = rng.uniform(0.3, 1.0)
    return cv2.addWeighted(image, 1 + amount, blurred, -amount, 0)


def random_affine(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    max_shift: float,
    scale_range: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Shift and scale the source and its mask together about the image centre."""
    height, width = image.shape[:2]
    scale = rng.uniform(*scale_range)
    shift_x, shift_y = rng.uniform(-max_shift, max_shift, size=2) * (width, height)
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 0.0, scale)
    matrix[:, 2] += (shift_x, shift_y)
    warped = cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)
    warped_mask = cv2.warpAffine(mask, matrix, (width, height), borderValue=0)
    return warped, warped_mask


def landmark_alignment(moving: np.ndarray, fixed: np.ndarray) -> tuple[np.ndarray, float]:
    """The similarity transform (2x3) taking `moving` landmarks onto `fixed`, and the mean
    distance left between them, as a share of the fixed face's size: how alike the two face
    shapes are once aligned (a donor with a small residual pastes without visible warping)."""
    matrix, _ = cv2.estimateAffinePartial2D(moving, fixed, method=cv2.LMEDS)
    if matrix is None:
        return np.eye(2, 3, dtype=np.float64), float("inf")
    moved = moving @ matrix[:, :2].T + matrix[:, 2]
    size = float(np.ptp(fixed, axis=0).max()) or 1.0
    return matrix, float(np.linalg.norm(moved - fixed, axis=1).mean() / size)


def match_colour(source: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`source` with each Lab channel's mean and spread inside `mask` moved to the target's
    there (Reinhard's colour transfer, Face X-ray's colour correction)."""
    inside = mask > 0.5
    if not inside.any():
        return source
    source_lab = cv2.cvtColor(source, cv2.COLOR_RGB2LAB).astype(np.float32)
    target_lab = cv2.cvtColor(target, cv2.COLOR_RGB2LAB).astype(np.float32)
    source_in, target_in = source_lab[inside], target_lab[inside]
    scale = target_in.std(axis=0) / np.maximum(source_in.std(axis=0), 1e-3)
    matched = (source_lab - source_in.mean(axis=0)) * scale + target_in.mean(axis=0)
    return cv2.cvtColor(np.clip(matched, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def other_face_source(donor: Donor, target: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The donor's face warped onto the target's landmarks and matched to its colours."""
    height, width = target.shape[:2]
    matrix, _ = landmark_alignment(donor.landmarks, landmarks)
    warped = cv2.warpAffine(donor.image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)
    return match_colour(warped, target, hull_mask(height, width, landmarks))


def blend(source: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """mask * source + (1 - mask) * target, per pixel, back to uint8."""
    weight = mask[..., np.newaxis]
    mixed = weight * source.astype(np.float32) + (1 - weight) * target.astype(np.float32)
    return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


def self_blend(
    face: np.ndarray,
    landmarks: np.ndarray,
    rng: np.random.Generator,
    config: SelfBlendConfig = SelfBlendConfig(),
    donor: Donor | None = None,
) -> SelfBlended:
    """A pseudo-fake of the (H, W, 3) uint8 face; pixels where `mask` is 0 are untouched. With a
    `donor`, the blended-in source is that person's face (other_face_source) instead of this
    face perturbed; the mask, its deformation and the blend are the same either way."""
    height, width = face.shape[:2]
    source, target = face, face
    if donor is not None:
        source = other_face_source(donor, face, landmarks)
    else:
        perturbed = perturb_frequency(perturb_colour(face, rng), rng)
        if rng.random() < config.perturb_target:
            target = perturbed
        else:
            source = perturbed
    region = blend_region(height, width, landmarks, rng, config)
    mask = deform_mask(region, rng, config.max_mask_morph)
    mask = elastic_deform(mask, rng, config.elastic_alpha, config.elastic_sigma)
    source, mask = random_affine(source, mask, rng, config.max_shift, config.scale_range)
    if rng.random() < config.poisson_blend:
        cloned = poisson_blend(source, target, mask)
        if cloned is not None:
            return cloned
    mask = soften_mask(mask, rng) * rng.choice(config.blend_ratios)
    return SelfBlended(blend(source, target, mask), mask.astype(np.float32))


def poisson_blend(source: np.ndarray, target: np.ndarray, mask: np.ndarray) -> SelfBlended | None:
    """`source` cloned into `target` inside the binary `mask` by Poisson image editing (the
    gradients are the source's, the boundary values the target's); None when the mask is empty
    once a 2 px frame is cleared (seamlessClone needs the region inside the picture)."""
    region = (mask > 0.5).astype(np.uint8)
    region[:2], region[-2:], region[:, :2], region[:, -2:] = 0, 0, 0, 0
    if not region.any():
        return None
    x, y, width, height = cv2.boundingRect(region)
    centre = (x + width // 2, y + height // 2)
    cloned = cv2.seamlessClone(source, target, region * 255, centre, cv2.NORMAL_CLONE)
    # seamlessClone nudges a few pixels next to the region too: outside it, the target stays.
    cloned = np.where(region[..., np.newaxis] > 0, cloned, target)
    return SelfBlended(cloned, region.astype(np.float32))


def _odd(value: int) -> int:
    value = max(3, int(value))
    return value if value % 2 else value + 1
