"""The benchmarks' clips: a sample video's face upscaled to 1080p, 4K and a minute of 720p,
encoded as cameras write them, and a phone-style 1080p clip; cached in benchmarks/clips/
(git-ignored)."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from support.samples import SAMPLE_DATA

SAMPLE_VIDEO = SAMPLE_DATA / "videos" / "real" / "a_wolfgang_c1.mp4"
CLIP_DIR = Path(__file__).resolve().parent / "clips"


@dataclass(frozen=True)
class ClipSpec:
    width: int
    height: int
    seconds: int
    fps: int = 30
    # x264's own options; the default is x264's: a keyframe at most every 250 frames, B-frames.
    x264: dict[str, str] = field(default_factory=dict)
    jitter: float = 0.0  # frame times vary by up to this share of a frame (variable frame rate)


CLIPS = {
    "1080p": ClipSpec(1920, 1080, 10),
    "4k": ClipSpec(3840, 2160, 10),
    "720p-60s": ClipSpec(1280, 720, 60),
    # As a phone's hardware encoder writes: a keyframe every second, no B-frames, frame times
    # that wander (variable frame rate).
    "phone-1080p": ClipSpec(1920, 1080, 10, x264={"g": "30", "bf": "0"}, jitter=0.3),
}
SERVED_CLIPS = ("1080p", "4k", "720p-60s")  # what `make bench` serves by default


def make_clip(name: str) -> Path:
    """An H.264 clip of the sample video's face, upscaled; cached, since encoding 4K takes a
    minute."""
    spec = CLIPS[name]
    path = CLIP_DIR / f"{name}.mp4"
    if path.is_file():
        return path
    CLIP_DIR.mkdir(parents=True, exist_ok=True)
    with av.open(str(SAMPLE_VIDEO)) as source:
        frames = [frame.to_ndarray(format="rgb24") for frame in source.decode(video=0)]
    cycle = frames + frames[::-1]  # forwards then backwards: motion without a jump
    ticks_per_frame = 100  # frame times in 1/(fps*100) s, so jitter has room
    offsets = np.random.default_rng(0).uniform(-spec.jitter, spec.jitter, spec.fps * spec.seconds)
    partial = path.with_suffix(".partial.mp4")
    with av.open(str(partial), mode="w") as output:
        stream = output.add_stream(
            "libx264", rate=spec.fps, options={"preset": "veryfast", **spec.x264}
        )
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        time_base = Fraction(1, spec.fps * ticks_per_frame)
        if spec.jitter:
            stream.codec_context.time_base = time_base
        for index in range(spec.fps * spec.seconds):
            rgb = cv2.resize(
                cycle[index % len(cycle)], (spec.width, spec.height), interpolation=cv2.INTER_CUBIC
            )
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if spec.jitter:
                frame.pts = round((index + offsets[index]) * ticks_per_frame)
                frame.time_base = time_base
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    partial.rename(path)
    return path
