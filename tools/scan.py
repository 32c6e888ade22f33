"""Show what the pipeline finds in local videos, before any model exists.

    python -m tools.scan VIDEO_OR_FOLDER... [--interval 20 | --num-frames N]

One line per video: frames sampled and faces found, or why the file could not be read. Shows
whether videos are usable for training or scoring; verdicts come from `training.infer` or the
server.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from model.errors import VideoInputError
from model.faces import DetectorConfig, make_detector
from model.network import ModelSettings
from model.pipeline import extract_faces
from model.schema import add_arguments, parse_command
from model.video import SamplingConfig
from protocol.wire import find_videos


@dataclass(frozen=True)
class ScanCommand:
    """`python -m tools.scan`'s settings, a flag per field."""

    inputs: tuple[Path, ...] = field(
        metadata={"positional": True, "help": "video files or folders of videos"}
    )
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, ScanCommand)
    config = parse_command(parser, ScanCommand, argv)
    detector = make_detector(config.detector)
    settings = ModelSettings()
    failures = 0
    for path in find_videos(config.inputs):
        try:
            faces = extract_faces(path, config.sampling, detector, settings)
        except VideoInputError as error:
            failures += 1
            print(f"{path}: error: {error}")
            continue
        print(f"{path}: {len(faces.frames)} frames, {faces.face_count} faces")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
