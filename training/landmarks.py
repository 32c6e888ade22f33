"""dlib's 68-point face landmarks, used to draw the self-blending mask.

The model (`shape_predictor_68_face_landmarks.dat` from face-recognition-models) is trained on
iBUG 300-W, whose licence excludes commercial use. Only training's self-blended fakes need it;
detection and serving do not.
"""

from __future__ import annotations

import warnings

import dlib
import numpy as np

from model.faces import FaceBox


def landmark_model_path() -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the package imports pkg_resources
        import face_recognition_models

    return face_recognition_models.pose_predictor_model_location()


class LandmarkPredictor:
    """68 (x, y) points of a face inside a known box."""

    def __init__(self) -> None:
        self._predictor = dlib.shape_predictor(landmark_model_path())

    def predict(self, rgb: np.ndarray, box: FaceBox) -> np.ndarray:
        """(68, 2) float32 pixel coordinates in `rgb` of the face in `box`."""
        rect = dlib.rectangle(box.x0, box.y0, box.x1 - 1, box.y1 - 1)
        shape = self._predictor(np.ascontiguousarray(rgb), rect)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
