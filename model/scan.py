"""Run the pipeline on local videos without a server and print one line per video.

    python -m model.scan VIDEO_OR_FOLDER... [--interval 20 | --num-frames N] [--checkpoint CKPT]

Without `--checkpoint` it reports what the pipeline sees (frames sampled, faces found), which
shows whether a video is usable before any model exists; with one it prints the verdict too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from model.errors import DeepfakeServeError
from model.faces import DetectorConfig, make_detector
from model.network import ModelSettings, load_checkpoint
from model.pipeline import PipelineConfig, analyze_video, extract_faces
from model.video import SamplingConfig, find_videos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="video files or folders of videos")
    parser.add_argument("--interval", type=int, default=20, help="analyse every N-th frame")
    parser.add_argument("--num-frames", type=int, help="analyse N evenly spaced frames instead")
    parser.add_argument("--max-frames", type=int, default=64, help="cap on frames per video")
    parser.add_argument("--aggregation", default="mean", help="mean, confident or face_max")
    parser.add_argument("--checkpoint", type=Path, help="weights .pt with its .json settings")
    args = parser.parse_args(argv)

    config = PipelineConfig(
        sampling=SamplingConfig(args.interval, args.num_frames, args.max_frames),
        aggregation=args.aggregation,
    )
    detector = make_detector(DetectorConfig())
    network, settings = (None, ModelSettings())
    if args.checkpoint:
        network, settings = load_checkpoint(args.checkpoint)
    failures = 0
    for path in find_videos(args.inputs):
        try:
            if network is None:
                faces = extract_faces(path, config.sampling, detector, settings)
                print(f"{path}: {len(faces.frames)} frames, {faces.face_count} faces")
                continue
            verdict = analyze_video(path, network, settings, config, detector)
            probability = verdict.fake_probability
            shown = "-" if probability is None else f"{probability:.3f}"
            print(f"{path}: {verdict.label} {shown} ({verdict.faces.face_count} faces)")
        except DeepfakeServeError as error:
            failures += 1
            print(f"{path}: error: {error}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
