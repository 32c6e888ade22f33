"""Face recall: how many of the faces a viewer can see each detector configuration finds, how
many of its boxes are faces, and what it costs per frame.

    python -m benchmarks.faces [--configs served,upsample-1,...] [--repeats 3]

The faces are the hand-checked boxes of `tests/data/face_recall.json` (its "about" says how
they were made) on the frames it names, plus frames made from them: each enlarged to 1920 px
wide as in a 1080p newscast, six Solvay tiles in one 1920 px mosaic, each rolled 20 degrees.
A face counts when a detection overlaps it with IoU >= 0.3 (one detection per face); faces
under `min_face_px` wide are neither counted nor held against a detector that finds them.
Recall is printed by face width and by pose, time per frame as the median of `--repeats`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from model.faces import DetectorConfig, FaceBox, iou, make_detector
from model.schema import add_arguments, parse_command
from model.video import SamplingConfig, read_sampled_frames
from support.samples import SAMPLE_DATA

REPO = Path(__file__).resolve().parent.parent
RECALL_SET = REPO / "tests" / "data" / "face_recall.json"
POOL_DATA = Path(os.environ.get("DEEPFAKE_POOL_DATA", REPO.parent / "shared" / "pool"))
ROOTS = {"sample": SAMPLE_DATA, "pool": POOL_DATA}
MATCH_IOU = 0.3
NEWSCAST_WIDTH = 1920
MOSAIC_COLUMNS, MOSAIC_TILE_WIDTH = 3, 640
ROLL_DEGREES = 20.0
SIZE_BANDS = ((40, 80), (80, 160), (160, 10**6))

# The configurations compared, each with the sampled frame's number it is measured as: the
# served detector looks twice at frame 0 and every `retry_every`-th ("served-first-frame"), and
# on the frames between only where a face is small or none was found ("served"). Before MTCNN
# was the second look, HOG searched again at upsample 1 ("hog-retry"); before that it retried
# only frames where nothing was found, and kept 10 faces a frame.
HOG_ONLY = {"retry_with": "hog", "retry_every": None}
CONFIGS: dict[str, tuple[DetectorConfig, int]] = {
    "served": (DetectorConfig(), 1),
    "served-first-frame": (DetectorConfig(), 0),
    "mtcnn-min-face-20": (DetectorConfig(retry_min_face_px=20), 1),
    "mtcnn-probability-0.7": (DetectorConfig(retry_min_probability=0.7), 1),
    "mtcnn-probability-0.7-first-frame": (DetectorConfig(retry_min_probability=0.7), 0),
    "hog-retry": (DetectorConfig(**HOG_ONLY), 1),
    "hog-10-faces-a-frame": (DetectorConfig(max_faces=10, retry_below_px=None, **HOG_ONLY), 1),
    "hog-retry-when-none": (DetectorConfig(retry_below_px=None, **HOG_ONLY), 1),
    "hog-upsample-1": (DetectorConfig(upsample=1, retry_with=None), 1),
    "hog-width-1280": (DetectorConfig(detect_width=1280, retry_below_px=None, **HOG_ONLY), 1),
    "hog-width-1280-upsample-1": (
        DetectorConfig(detect_width=1280, upsample=1, retry_with=None),
        1,
    ),
    "hog-full-res-upsample-1": (DetectorConfig(detect_width=10**5, upsample=1, retry_with=None), 1),
}


@dataclass(frozen=True)
class TruthFace:
    box: FaceBox
    pose: str


@dataclass(frozen=True)
class TruthFrame:
    """A frame, where it came from, and the faces a viewer sees in it."""

    name: str
    kind: str  # "native", "newscast", "mosaic" or "rolled"
    rgb: np.ndarray
    faces: tuple[TruthFace, ...]


@dataclass
class Tally:
    found: int = 0
    total: int = 0

    def text(self) -> str:
        share = f"{self.found / self.total:.0%}" if self.total else "-"
        return f"{self.found}/{self.total} ({share})"


@dataclass
class ConfigResult:
    by_band: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    by_pose: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    by_kind: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    frontal_to_three_quarter: Tally = field(default_factory=Tally)
    detections: int = 0
    false_positives: int = 0
    seconds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


@dataclass(frozen=True)
class FacesBenchCommand:
    """`python -m benchmarks.faces`'s settings, a flag per field."""

    configs: tuple[str, ...] = field(
        default=tuple(CONFIGS), metadata={"help": f"some of {list(CONFIGS)}"}
    )
    repeats: int = field(default=3, metadata={"help": "timed runs per frame (median kept)"})

    def __post_init__(self) -> None:
        check_configs(self.configs)
        if self.repeats < 1:
            raise ValueError(f"repeats must be at least 1, got {self.repeats}")


def check_configs(names: tuple[str, ...]) -> None:
    unknown = sorted(set(names) - set(CONFIGS))
    if unknown:
        raise ValueError(f"unknown configuration(s) {unknown}; choose from {list(CONFIGS)}")


def video_path(reference: str) -> Path:
    """The file a recall-set reference ("pool:videos/real/x.mp4") names."""
    root, relative = reference.split(":", 1)
    return ROOTS[root] / relative


def _first_frame(reference: str) -> np.ndarray:
    _, frames = read_sampled_frames(video_path(reference), SamplingConfig(num_frames=1))
    return frames[0].rgb


def _scaled(
    faces: tuple[TruthFace, ...], scale: float, dx: int = 0, dy: int = 0
) -> tuple[TruthFace, ...]:
    """The faces of a frame scaled by `scale`, then moved by (dx, dy)."""
    moved = []
    for face in faces:
        x0, y0, x1, y1 = (round(v * scale) for v in face.box.as_list())
        moved.append(TruthFace(FaceBox(x0 + dx, y0 + dy, x1 + dx, y1 + dy), face.pose))
    return tuple(moved)


def _rolled(frame: TruthFrame) -> TruthFrame:
    """The frame turned ROLL_DEGREES about its centre; each box turns about the same centre
    and keeps its size (a tilted head's face box is the same size)."""
    height, width = frame.rgb.shape[:2]
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), ROLL_DEGREES, 1.0)
    rgb = cv2.warpAffine(frame.rgb, turn, (width, height), flags=cv2.INTER_LINEAR)
    faces = []
    for face in frame.faces:
        centre = turn @ np.array(
            [(face.box.x0 + face.box.x1) / 2, (face.box.y0 + face.box.y1) / 2, 1]
        )
        half_w, half_h = face.box.width / 2, face.box.height / 2
        box = FaceBox(*(round(v) for v in (centre[0] - half_w, centre[1] - half_h,
                                            centre[0] + half_w, centre[1] + half_h)))  # fmt: skip
        if box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height:
            faces.append(TruthFace(box, face.pose))  # a face turned out of the frame is gone
    return TruthFrame(frame.name, "rolled", rgb, tuple(faces))


def recall_frames(recall_set: Path = RECALL_SET) -> Iterator[TruthFrame]:
    """The recall set's frames as they are, then the frames made from them."""
    spec = json.loads(recall_set.read_text())
    natives = {}
    for entry in spec["frames"]:
        rgb = _first_frame(entry["video"])
        if [rgb.shape[1], rgb.shape[0]] != entry["size"]:
            raise ValueError(f"{entry['video']}: frame is {rgb.shape[1]}x{rgb.shape[0]}, "
                             f"the recall set was drawn on {entry['size']}")  # fmt: skip
        faces = tuple(TruthFace(FaceBox(*f["box"]), f["pose"]) for f in entry["faces"])
        natives[entry["video"]] = TruthFrame(entry["video"], "native", rgb, faces)
    yield from natives.values()
    for frame in natives.values():
        scale = NEWSCAST_WIDTH / frame.rgb.shape[1]
        size = (NEWSCAST_WIDTH, round(frame.rgb.shape[0] * scale))
        rgb = cv2.resize(frame.rgb, size, interpolation=cv2.INTER_CUBIC)
        yield TruthFrame(frame.name, "newscast", rgb, _scaled(frame.faces, scale))
    tiles = [natives[name] for name in spec["mosaic"]]
    scale = MOSAIC_TILE_WIDTH / tiles[0].rgb.shape[1]
    tile_height = round(tiles[0].rgb.shape[0] * scale)
    rows = -(-len(tiles) // MOSAIC_COLUMNS)
    mosaic = np.zeros((rows * tile_height, MOSAIC_COLUMNS * MOSAIC_TILE_WIDTH, 3), np.uint8)
    faces: list[TruthFace] = []
    for number, tile in enumerate(tiles):
        row, column = divmod(number, MOSAIC_COLUMNS)
        x, y = column * MOSAIC_TILE_WIDTH, row * tile_height
        mosaic[y : y + tile_height, x : x + MOSAIC_TILE_WIDTH] = cv2.resize(
            tile.rgb, (MOSAIC_TILE_WIDTH, tile_height), interpolation=cv2.INTER_AREA
        )
        faces.extend(_scaled(tile.faces, scale, x, y))
    yield TruthFrame("solvay mosaic", "mosaic", mosaic, tuple(faces))
    for frame in natives.values():
        yield _rolled(frame)


def score_frame(result: ConfigResult, frame: TruthFrame, found: list[FaceBox], min_px: int):
    """Match detections to faces greedily by IoU and add the counts to `result`."""
    pairs = sorted(
        (
            (iou(face.box, box), i, j)
            for i, face in enumerate(frame.faces)
            for j, box in enumerate(found)
        ),
        reverse=True,
    )
    matched_faces, matched_boxes = set(), set()
    for overlap, i, j in pairs:
        if overlap >= MATCH_IOU and i not in matched_faces and j not in matched_boxes:
            matched_faces.add(i)
            matched_boxes.add(j)
    result.detections += len(found)
    result.false_positives += len(found) - len(matched_boxes)
    for i, face in enumerate(frame.faces):
        width = face.box.width
        if width < min_px:
            if i in matched_faces:
                result.detections -= 1  # a small face found: neither a hit nor a false one
            continue
        hit = int(i in matched_faces)
        band = next(f"{lo}-{hi}px" if hi < 10**6 else f">={lo}px" for lo, hi in SIZE_BANDS
                    if lo <= width < hi)  # fmt: skip
        for tally in (result.by_band[band], result.by_pose[face.pose], result.by_kind[frame.kind]):
            tally.found += hit
            tally.total += 1
        if face.pose in ("frontal", "three-quarter"):
            result.frontal_to_three_quarter.found += hit
            result.frontal_to_three_quarter.total += 1


def measure(
    config: DetectorConfig, frame_number: int, frames: list[TruthFrame], repeats: int, min_px: int
):
    detector = make_detector(config)
    result = ConfigResult()
    for frame in frames:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            detections = detector.detect(frame.rgb, frame_number)
            times.append(time.perf_counter() - started)
        result.seconds[frame.kind].append(statistics.median(times))
        score_frame(result, frame, [d.box for d in detections], min_px)
    return result


def report(name: str, result: ConfigResult) -> None:
    true_positives = result.detections - result.false_positives
    precision = true_positives / result.detections if result.detections else float("nan")
    ms = {kind: 1000 * statistics.mean(s) for kind, s in result.seconds.items()}
    wanted = result.frontal_to_three_quarter.text()
    false = f"{result.false_positives} false of {result.detections}"
    print(f"faces: {name}: frontal-to-3/4 recall {wanted}, precision {precision:.0%} ({false})")
    bands = ", ".join(f"{band} {tally.text()}" for band, tally in sorted(result.by_band.items()))
    print(f"faces: {name}: by width: {bands}")
    poses = ", ".join(f"{pose} {tally.text()}" for pose, tally in sorted(result.by_pose.items()))
    print(f"faces: {name}: by pose: {poses}")
    kinds = ", ".join(f"{k} {result.by_kind[k].text()} {ms[k]:.0f} ms/frame" for k in ms)
    print(f"faces: {name}: by frame: {kinds}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, FacesBenchCommand)
    command = parse_command(parser, FacesBenchCommand, argv)
    min_px = json.loads(RECALL_SET.read_text())["min_face_px"]
    frames = list(recall_frames())
    counted = sum(1 for f in frames for face in f.faces if face.box.width >= min_px)
    print(f"faces: recall set: {len(frames)} frames, {counted} faces >= {min_px} px")
    for name in command.configs:
        report(name, measure(*CONFIGS[name], frames, command.repeats, min_px))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
