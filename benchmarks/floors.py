"""The physical floor of each stage of one request on this machine: what the work itself needs,
measured alone, beside which `make bench` prints each stage's measured time.

- decode: CPU-seconds to decode the frames the sampled ones need (the decoder's own skipping:
  unreferenced frames, keyframe restarts) and convert the sampled ones to RGB, one thread, in
  this process: the machine's decode rate for this clip, with no sandbox, copy or scheduling;
- detect: CPU-seconds of the shipped detector (grey HOG, MTCNN's second look) on those frames,
  one thread;
- classify: the network's floating-point operations for the crops found (counted by torch's
  FlopCounterMode, 2 per multiply-add) over the machine's measured peak: the best rate of a
  large matrix product on all cores in the type the shipped path computes in (bf16 where the
  CPU has native bf16, else fp32). Xception's depthwise convolutions cannot reach it, so this
  floor is below what any implementation could do.

The request's floor is the three CPU-seconds over the cores: no schedule finishes sooner.
"""

from __future__ import annotations

import argparse
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from model.cpu import cpu_flags, cpu_model, has_native_bf16, usable_cores
from model.faces import DetectorConfig, make_detector
from model.network import ModelSettings, build_model
from model.video import SamplingConfig, VideoReader

STAGES = ("decode", "detect", "classify")  # the stages a response's timing_ms names
# The CPU features that decide the fastest path, named beside every figure.
REPORTED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni")


def machine() -> str:
    """This machine's CPU as the benchmarks print it: model, usable cores, the flags that matter."""
    flags = sorted(flag for flag in REPORTED_FLAGS if flag in cpu_flags())
    return f"{cpu_model()} ({usable_cores()} cores; {' '.join(flags)})"


@dataclass(frozen=True)
class StageFloors:
    decode_cpu_s: float
    detect_cpu_s: float
    crops: int  # faces the detector found on the sampled frames
    gflop_per_crop: float
    peak_gflops: float  # all cores, in `peak_dtype`
    peak_dtype: str
    cores: int

    @property
    def classify_cpu_s(self) -> float:
        return self.crops * self.gflop_per_crop / (self.peak_gflops / self.cores)

    def cpu_s(self, stage: str) -> float:
        """CPU-seconds the work of one of STAGES needs."""
        return {
            "decode": self.decode_cpu_s,
            "detect": self.detect_cpu_s,
            "classify": self.classify_cpu_s,
        }[stage]

    def wall_ms(self, stage: str) -> float:
        """The stage's floor as wall time with every core on it."""
        return 1000 * self.cpu_s(stage) / self.cores

    @property
    def request_s(self) -> float:
        return sum(self.cpu_s(stage) for stage in STAGES) / self.cores


def cpu_seconds() -> float:
    """This process's CPU time, every thread."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def gflop_per_crop(input_size: int) -> float:
    network = build_model(ModelSettings(name="floor", input_size=input_size)).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        network(torch.zeros(1, 3, input_size, input_size))
    return counter.get_total_flops() / 1e9


@dataclass(frozen=True)
class Peak:
    gflops: float  # all cores
    dtype: str


def measure_peak(size: int = 2048, rounds: int = 30) -> Peak:
    """The best rate of a `size`-square matrix product on every usable core, in the type the
    shipped path computes in; a machine property, so measured once (best of many: a shared
    machine's other tenants only ever slow it down)."""
    dtype = torch.bfloat16 if has_native_bf16() else torch.float32
    threads = torch.get_num_threads()
    torch.set_num_threads(usable_cores())
    try:
        a = torch.randn(size, size).to(dtype)
        b = torch.randn(size, size).to(dtype)
        for _ in range(3):
            torch.matmul(a, b)  # warm: thread pool, kernel choice, clock
        best = float("inf")
        for _ in range(rounds):
            started = time.perf_counter()
            torch.matmul(a, b)
            best = min(best, time.perf_counter() - started)
    finally:
        torch.set_num_threads(threads)
    return Peak(2 * size**3 / best / 1e9, str(dtype).split(".")[-1])


def measure_floors(clip: Path, peak: Peak, input_size: int = 299, rounds: int = 3) -> StageFloors:
    """Each stage's work on `clip` with the server's default sampling, best of `rounds`."""
    cores = usable_cores()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the detector's MTCNN: one thread, its CPU-seconds
    detector = make_detector(DetectorConfig())
    decode_s = detect_s = float("inf")
    crops = 0
    try:
        for _ in range(rounds):
            started = cpu_seconds()
            with VideoReader(clip, threads=1) as reader:
                frames = list(reader.sample(SamplingConfig()))
            decode_s = min(decode_s, cpu_seconds() - started)
            started = cpu_seconds()
            crops = sum(len(detector.detect(frame.rgb, n)) for n, frame in enumerate(frames))
            detect_s = min(detect_s, cpu_seconds() - started)
    finally:
        torch.set_num_threads(threads)
    return StageFloors(
        decode_s, detect_s, crops, gflop_per_crop(input_size), peak.gflops, peak.dtype, cores
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", type=Path)
    parser.add_argument("--input-size", type=int, default=299)
    args = parser.parse_args()
    print(measure_floors(args.clip, measure_peak(), args.input_size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
