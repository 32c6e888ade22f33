"""The benchmarks' clips: a sample video's face upscaled to 1080p, 4K and a minute of 720p,
encoded as cameras write them and cached in benchmarks/clips/ (git-ignored)."""

from __future__ import annotations

from pathlib import Path

import av
import cv2

from support.samples import SAMPLE_DATA

SAMPLE_VIDEO = SAMPLE_DATA / "videos" / "real" / "a_wolfgang_c1.mp4"
CLIP_DIR = Path(__file__).resolve().parent / "clips"
# name -> (width, height, seconds) at 30 fps
CLIPS = {"1080p": (1920, 1080, 10), "4k": (3840, 2160, 10), "720p-60s": (1280, 720, 60)}


def make_clip(name: str) -> Path:
    """An H.264 clip (B-frames, as cameras and phones write) of the sample video's face,
    upscaled; cached, since encoding 4K takes a minute."""
    width, height, seconds = CLIPS[name]
    path = CLIP_DIR / f"{name}.mp4"
    if path.is_file():
        return path
    CLIP_DIR.mkdir(parents=True, exist_ok=True)
    with av.open(str(SAMPLE_VIDEO)) as source:
        frames = [frame.to_ndarray(format="rgb24") for frame in source.decode(video=0)]
    cycle = frames + frames[::-1]  # forwards then backwards: motion without a jump
    partial = path.with_suffix(".partial.mp4")
    with av.open(str(partial), mode="w") as output:
        stream = output.add_stream("libx264", rate=30, options={"preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(30 * seconds):
            rgb = cv2.resize(
                cycle[index % len(cycle)], (width, height), interpolation=cv2.INTER_CUBIC
            )
            output.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        output.mux(stream.encode(None))
    partial.rename(path)
    return path
