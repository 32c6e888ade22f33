"""Person recall over whole clips: is every person a viewer sees found, and followed?

    python -m benchmarks.people_recall [--configs served,hog-retry]

For each clip of the recall set (`tests/data/face_recall.json`: the multi-person clips of the
sample set and the pool), the pipeline's faces on every 20th frame (as served) are linked into
people (`model/people.py`, with face descriptors). A person of the recall set's first frame
(frontal or three-quarter, at least `min_face_px` wide) is found when a track's face on the
first sampled frame overlaps them (IoU >= 0.3). Printed per clip and in all: people found of
people there, tracks (more tracks than faces visible, partial and small ones included: someone
was split in two, or something that is not a face was followed), and the share of sampled
frames that hold each found person's face.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field

from benchmarks.faces import CONFIGS, MATCH_IOU, RECALL_SET, check_configs, video_path
from model.faces import FaceBox, FaceDetector, iou, make_detector
from model.network import ModelSettings
from model.people import FaceDescriber, TrackingConfig, link_people
from model.pipeline import extract_faces
from model.schema import add_arguments, parse_command
from model.video import SamplingConfig

SETTINGS = ModelSettings(input_size=160)  # crops are cut but never classified here


@dataclass(frozen=True)
class PeopleRecallCommand:
    """`python -m benchmarks.people_recall`'s settings, a flag per field."""

    configs: tuple[str, ...] = field(
        default=("served", "hog-retry"), metadata={"help": f"some of {list(CONFIGS)}"}
    )

    def __post_init__(self) -> None:
        check_configs(self.configs)


@dataclass
class ClipPeople:
    name: str
    people: int
    found: int
    tracks: int
    visible: int  # every face of the first frame, partial and small ones too
    coverage: list[float]  # per found person: share of sampled frames with their face


def clip_people(
    reference: str,
    truth: list[FaceBox],
    visible: int,
    detector: FaceDetector,
    describe: FaceDescriber,
) -> ClipPeople:
    path = video_path(reference)
    faces = extract_faces(path, SamplingConfig(), detector, SETTINGS)
    tracks = link_people(faces.frames, describe, TrackingConfig())
    first = faces.frames[0].frame_index
    coverage = []
    for box in truth:
        matches = [
            person
            for person in tracks
            if any(f.frame_index == first and iou(f.box, box) >= MATCH_IOU for f in person.faces)
        ]
        if matches:
            coverage.append(len(matches[0].faces) / len(faces.frames))
    return ClipPeople(path.name, len(truth), len(coverage), len(tracks), visible, coverage)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, PeopleRecallCommand)
    command = parse_command(parser, PeopleRecallCommand, argv)
    spec = json.loads(RECALL_SET.read_text())
    describe = FaceDescriber()
    for name in command.configs:
        detector = make_detector(CONFIGS[name][0])
        clips = []
        for entry in spec["frames"]:
            truth = [
                FaceBox(*face["box"])
                for face in entry["faces"]
                if face["pose"] != "partial"
                and face["box"][2] - face["box"][0] >= spec["min_face_px"]
            ]
            visible = len(entry["faces"])
            clips.append(clip_people(entry["video"], truth, visible, detector, describe))
        for clip in clips:
            shares = ", ".join(f"{share:.0%}" for share in clip.coverage)
            print(f"people: {name}: {clip.name}: {clip.found}/{clip.people} found, "
                  f"{clip.tracks} tracks; frames with each found face: {shares}")  # fmt: skip
        found, people = sum(c.found for c in clips), sum(c.people for c in clips)
        split = sum(max(0, c.tracks - c.visible) for c in clips)
        full = sum(share == 1.0 for c in clips for share in c.coverage)
        print(f"people: {name}: {found}/{people} people found ({found / people:.0%}), {full} "
              f"of them in every sampled frame; {split} tracks beyond the faces seen")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
