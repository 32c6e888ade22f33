"""What each of the decoder's choices saves, per kind of clip, without the model.

    python -m benchmarks.decoding [--clips 1080p,4k,720p-60s,phone-1080p] [--rounds 3]

Decodes each clip's sampled frames (the server's default sampling: every 20th frame, at most
64) in this process with VideoReader, three ways: every frame decoded; unsampled frames that
no other frame refers to skipped; and also restarting at keyframes past the packets no sampled
frame needs. Each with 1 and 2 decoder threads; prints the frames the decoder put out, the
packets never given to it, the best wall time and its CPU-seconds, and fails if any way gives
a sampled frame that differs by one bit from decoding every frame.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.floors import cpu_seconds, machine
from benchmarks.footage import CLIPS, make_clip
from model.video import SamplingConfig, VideoReader

SAMPLING = SamplingConfig()  # the server's default: every 20th frame, at most 64
WAYS = {  # name -> (skip unsampled non-reference frames, restart at keyframes)
    "every frame": (False, False),
    "skip non-reference": (True, False),
    "+ keyframe restarts": (True, True),
}


@dataclass(frozen=True)
class Decoded:
    frames_decoded: int
    packets_dropped: int
    wall_s: float
    cpu_s: float
    digest: str  # of every sampled frame's index, time and pixels


def decode(clip: Path, threads: int, skip: bool, restarts: bool) -> Decoded:
    digest = hashlib.sha256()
    started, cpu_started = time.perf_counter(), cpu_seconds()
    with VideoReader(
        clip, threads=threads, skip_unsampled=skip, keyframe_restarts=restarts
    ) as reader:
        for frame in reader.sample(SAMPLING):
            digest.update(f"{frame.index} {frame.timestamp_s!r}".encode())
            digest.update(frame.rgb.tobytes())
    return Decoded(
        reader.frames_decoded,
        reader.packets_dropped,
        time.perf_counter() - started,
        cpu_seconds() - cpu_started,
        digest.hexdigest(),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", default=",".join(CLIPS), help=f"some of {list(CLIPS)}")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many decodes")
    args = parser.parse_args(argv)
    print(f"decoding: CPU {machine()}")
    print("| clip | threads | decoding | frames decoded | packets dropped | wall s | CPU-s |")
    print("|---|---|---|---|---|---|---|")
    same = True
    for name in args.clips.split(","):
        clip = make_clip(name)
        for threads in (1, 2):
            reference = None
            for way, (skip, restarts) in WAYS.items():
                runs = [decode(clip, threads, skip, restarts) for _ in range(args.rounds)]
                best = min(runs, key=lambda run: run.wall_s)
                reference = reference or best
                same &= all(run.digest == reference.digest for run in runs)
                print(
                    f"| {name} | {threads} | {way} | {best.frames_decoded} | "
                    f"{best.packets_dropped} | {best.wall_s:.2f} | {best.cpu_s:.2f} |"
                )
    print(f"decoding: sampled frames {'bit for bit the same' if same else 'DIFFER'} every way")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
