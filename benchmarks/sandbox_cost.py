"""What the decoding sandbox adds to one video's decoding, without the model.

    python -m benchmarks.sandbox_cost benchmarks/clips/1080p.mp4 [--rounds 4]

Opens, samples every 20th frame (at most 64) and closes the clip in the worker's own process
and in the sandbox, alternately, and prints the milliseconds of each step; the first round
(cold caches) is printed but left out of the medians.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from model.sandbox import DecoderSandbox
from model.video import SamplingConfig, VideoReader

SAMPLING = SamplingConfig(interval=20, max_frames=64)


def timed_steps(opener, clip: Path) -> dict[str, float]:
    """Milliseconds to open, to the first frame, to the last one, and to close."""
    started = time.perf_counter()
    with opener(clip, 0) as reader:
        opened = time.perf_counter()
        stamps = [time.perf_counter() for _ in reader.sample(SAMPLING)]
    closed = time.perf_counter()
    return {
        "open": (opened - started) * 1000,
        "first frame": (stamps[0] - opened) * 1000,
        "all frames": (stamps[-1] - opened) * 1000,
        "close": (closed - stamps[-1]) * 1000,
        "total": (closed - started) * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", type=Path)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    sandbox = DecoderSandbox()
    sandbox.start()
    openers = {"in-process": VideoReader, "sandbox": sandbox.open}
    steps: dict[str, list[dict[str, float]]] = {name: [] for name in openers}
    for round_index in range(args.rounds):
        for name, opener in openers.items():
            measured = timed_steps(opener, args.clip)
            steps[name].append(measured)
            shown = ", ".join(f"{step} {ms:.0f}" for step, ms in measured.items())
            print(f"round {round_index} {name}: {shown} ms")
    sandbox.close()
    for step in steps["sandbox"][0]:
        medians = {name: statistics.median(s[step] for s in runs[1:] or runs)
                   for name, runs in steps.items()}  # fmt: skip
        extra = medians["sandbox"] - medians["in-process"]
        print(f"{args.clip.name} {step}: in-process {medians['in-process']:.0f} ms, "
              f"sandbox {medians['sandbox']:.0f} ms ({extra:+.0f} ms)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
