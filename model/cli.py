"""Command-line flags for the pipeline settings, shared by every tool that runs the pipeline."""

from __future__ import annotations

import argparse

from model.aggregation import AGGREGATIONS
from model.pipeline import PipelineConfig
from model.video import SamplingConfig


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = PipelineConfig()
    sampling = defaults.sampling
    parser.add_argument(
        "--interval", type=int, default=sampling.interval, help="analyse every N-th frame"
    )
    parser.add_argument("--num-frames", type=int, help="analyse N evenly spaced frames instead")
    parser.add_argument(
        "--max-frames", type=int, default=sampling.max_frames, help="cap on frames per video"
    )
    parser.add_argument(
        "--aggregation",
        default=defaults.aggregation,
        choices=sorted(AGGREGATIONS),
        help="per-video rule",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=defaults.threshold,
        help="fake when the video's probability is at least this",
    )


def pipeline_config(args: argparse.Namespace) -> PipelineConfig:
    return PipelineConfig(
        sampling=SamplingConfig(args.interval, args.num_frames, args.max_frames),
        aggregation=args.aggregation,
        threshold=args.threshold,
    )
