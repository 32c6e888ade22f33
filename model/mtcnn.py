"""The detector's second look: MTCNN, a small CNN cascade that finds the faces HOG misses
(small, turned, rolled, bearded), with its boxes redrawn in HOG's convention.

The network and its weights come from the facenet-pytorch wheel (MIT; weights inside the
package, nothing downloaded), which pins torch < 2.3 in its metadata though its MTCNN runs on
any torch 2: `make setup` installs it with `--no-deps` from requirements-nodeps.txt, by hash.
The three weight files are checked against the hashes below before they are loaded.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from model.cpu import skip_triton_without_gpu
from model.faces import FaceBox

# sha256 of the weight files in facenet-pytorch 2.6.0's wheel (facenet_pytorch/data/).
WEIGHT_SHA256 = {
    "pnet.pt": "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
    "rnet.pt": "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
    "onet.pt": "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
}

# MTCNN's boxes are taller than HOG's squares and sit higher (they take in the forehead). Fitted
# on the 720 faces both find in 6 frames of every sample and pool video
# (`python -m benchmarks.box_mapping`): HOG's centre is MTCNN's moved down 7.2% of its height
# and right 0.5% of its width, HOG's side 0.936 x sqrt(width x height). Redrawn this way, a face
# only MTCNN finds is cut with the 1.3x crop the classifier was trained on.
CENTRE_SHIFT_X, CENTRE_SHIFT_Y, SIDE_SCALE = 0.005, 0.072, 0.936


class WeightsError(RuntimeError):
    """The installed MTCNN weights are not the ones this project was measured with."""


def hog_convention(box: FaceBox) -> FaceBox:
    """An MTCNN box redrawn as the square HOG would draw around the same face."""
    centre_x = (box.x0 + box.x1) / 2 + CENTRE_SHIFT_X * box.width
    centre_y = (box.y0 + box.y1) / 2 + CENTRE_SHIFT_Y * box.height
    half = SIDE_SCALE * (box.width * box.height) ** 0.5 / 2
    return FaceBox(
        round(centre_x - half),
        round(centre_y - half),
        round(centre_x + half),
        round(centre_y + half),
    )


def check_weights(folder: Path) -> None:
    for name, expected in WEIGHT_SHA256.items():
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        if digest != expected:
            raise WeightsError(
                f"{folder / name} has sha256 {digest}, not facenet-pytorch 2.6.0's {expected}: "
                "reinstall it with `make setup` (requirements-nodeps.txt)"
            )


class MtcnnSearch:
    """MTCNN on an RGB copy, faces from `min_face_px` wide, boxes in HOG's convention."""

    def __init__(self, min_face_px: int, min_probability: float) -> None:
        skip_triton_without_gpu()  # facenet-pytorch imports torchvision, which asks for it
        try:
            import facenet_pytorch
            from facenet_pytorch import MTCNN
        except ImportError as error:
            raise ImportError(
                "the detector's second look needs facenet-pytorch: `make setup` installs it "
                "(or set detector.retry_with to 'hog')"
            ) from error
        check_weights(Path(facenet_pytorch.__file__).parent / "data")
        self._min_face_px, self._min_probability = min_face_px, min_probability
        self._mtcnn = MTCNN(min_face_size=min_face_px, keep_all=True, device="cpu").eval()

    def __call__(self, rgb: np.ndarray) -> list[tuple[FaceBox, float]]:
        """HOG-convention boxes in `rgb`'s pixels (may reach past its edge) and MTCNN's face
        probabilities."""
        return [(hog_convention(box), probability) for box, probability in self.own_boxes(rgb)]

    def own_boxes(self, rgb: np.ndarray) -> list[tuple[FaceBox, float]]:
        """MTCNN's boxes as it draws them, and its face probabilities."""
        if min(rgb.shape[:2]) < self._min_face_px:
            return []  # no face that large fits (and MTCNN's image pyramid would be empty)
        with torch.inference_mode():
            boxes, probabilities = self._mtcnn.detect(rgb)
        if boxes is None:
            return []
        return [
            (FaceBox(*(round(float(v)) for v in box)), float(probability))
            for box, probability in zip(boxes, probabilities, strict=True)
            if probability >= self._min_probability
        ]
