"""Where MTCNN and HOG put the same face: the fit behind `model/mtcnn.py`'s constants.

    python -m benchmarks.box_mapping [--frames 6]

On `--frames` evenly spaced frames of every sample and pool video, both detectors search the
served 640 px copy (HOG's fast pass, MTCNN at the served smallest face); a face both find
(IoU >= 0.3, greedy) gives one pair. Printed: the medians (and quartiles) of HOG's centre
offset from MTCNN's, in MTCNN's width and height, and of HOG's side over sqrt(MTCNN's width x
height), the constants `hog_convention` uses.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import numpy as np

from benchmarks.faces import POOL_DATA
from model.faces import (
    DetectorConfig,
    FaceBox,
    FaceDetector,
    iou,
    make_detector,
    searched_copy,
)
from model.mtcnn import MtcnnSearch
from model.schema import add_arguments, parse_command
from model.video import SamplingConfig, read_sampled_frames
from support.samples import SAMPLE_DATA


@dataclass(frozen=True)
class BoxMappingCommand:
    """`python -m benchmarks.box_mapping`'s settings, a flag per field."""

    frames: int = field(default=6, metadata={"help": "frames per video"})

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError(f"frames must be at least 1, got {self.frames}")


def pairs_in(
    rgb: np.ndarray, hog: FaceDetector, mtcnn: MtcnnSearch
) -> list[tuple[FaceBox, FaceBox]]:
    """(HOG box, MTCNN box) of each face both find in the frame's searched copy."""
    copy, _ = searched_copy(rgb, DetectorConfig().detect_width)
    hog_boxes = [d.box for d in hog.detect(copy)]
    mtcnn_boxes = [box for box, _ in mtcnn.own_boxes(copy)]
    found = []
    for hog_box in hog_boxes:
        best = max(mtcnn_boxes, key=lambda box: iou(hog_box, box), default=None)
        if best is not None and iou(hog_box, best) >= 0.3:
            mtcnn_boxes.remove(best)
            found.append((hog_box, best))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, BoxMappingCommand)
    command = parse_command(parser, BoxMappingCommand, argv)
    hog = make_detector(DetectorConfig(retry_with=None))
    served = DetectorConfig()
    mtcnn = MtcnnSearch(served.retry_min_face_px, served.retry_min_probability)
    rows = []
    for root in (SAMPLE_DATA, POOL_DATA):
        for video in sorted((root / "videos").glob("*/*.mp4")):
            _, frames = read_sampled_frames(video, SamplingConfig(num_frames=command.frames))
            for frame in frames:
                for h, m in pairs_in(frame.rgb, hog, mtcnn):
                    rows.append((
                        ((h.x0 + h.x1) - (m.x0 + m.x1)) / 2 / m.width,
                        ((h.y0 + h.y1) - (m.y0 + m.y1)) / 2 / m.height,
                        max(h.width, h.height) / (m.width * m.height) ** 0.5,
                    ))  # fmt: skip
    table = np.array(rows)
    print(f"box_mapping: {len(rows)} faces both detectors find")
    for name, column in zip(
        ("centre shift x", "centre shift y", "side scale"), table.T, strict=True
    ):
        q1, median, q3 = np.percentile(column, [25, 50, 75])
        print(f"box_mapping: {name}: median {median:.3f} (quartiles {q1:.3f} to {q3:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
