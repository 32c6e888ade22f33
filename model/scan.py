"""Show what the pipeline finds in local videos, before any model exists.

    python -m model.scan VIDEO_OR_FOLDER... [--interval 20 | --num-frames N]

One line per video: frames sampled and faces found, or why the file could not be read. Shows
whether videos are usable for training or scoring; verdicts come from `training.infer` or the
server.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from model.cli import add_pipeline_arguments, pipeline_config
from model.errors import VideoInputError
from model.faces import make_detector
from model.network import ModelSettings
from model.pipeline import extract_faces
from model.video import find_videos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="video files or folders of videos")
    add_pipeline_arguments(parser)
    args = parser.parse_args(argv)
    config = pipeline_config(args)
    detector = make_detector(config.detector)
    settings = ModelSettings()
    failures = 0
    for path in find_videos(args.inputs):
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
