"""In-process benchmark on an NVIDIA GPU: latency per clip, videos per minute by worker count,
decoding options, and the GPU's verdicts against the CPU's fp32 ones on every sample video.

    python -m benchmarks.gpu_bench [--clips 1080p,4k,720p-60s] [--requests 3] [--workers 1,2,4]

TorchServe is not started (GPU machines here have had no Java): each "worker" is a process
holding one DetectorService on the GPU, as a TorchServe worker with a `gpu_id` does. One line
per figure, `gpu: <what>: <value>`, so a run's output can be pasted into docs/performance.md.
Timings depend on the weights only through the input size: a seeded random 299 px checkpoint.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from importlib.util import find_spec
from pathlib import Path

import av
import torch

from benchmarks.footage import CLIPS, SERVED_CLIPS, make_clip
from model.config import EngineConfig, ServiceConfig
from model.cpu import cpu_model, usable_cores
from model.credentials import CredentialsConfig
from model.network import ModelSettings
from model.people import TrackingConfig
from model.service import DetectorService
from model.verdict import VerdictConfig
from support.samples import read_labels
from support.weights import random_checkpoint, seeded_network

GPU = torch.device("cuda", 0)
# No face descriptors or Content Credentials: neither changes a score, and GPU machines here
# lack face-recognition-models and c2pa-python (benchmarks/gpu_carry.sh).
BENCH = ServiceConfig(
    people=TrackingConfig(descriptors=False), credentials=CredentialsConfig(enabled=False)
)
VERDICT_TOLERANCE = 0.02
_worker_service: DetectorService | None = None  # one per worker process


def report(what: str, value: str) -> None:
    print(f"gpu: {what}: {value}", flush=True)


def latency(service: DetectorService, clip: Path, requests: int) -> tuple[float, float, dict]:
    """Median and worst seconds per request after one warm request, and the mean stage ms."""
    service.analyze(clip)
    seconds, stages = [], {}
    for _ in range(requests):
        started = time.perf_counter()
        timing = service.analyze(clip).verdict.timing_ms
        seconds.append(time.perf_counter() - started)
        for stage, ms in timing.items():
            stages[stage] = stages.get(stage, 0.0) + ms / requests
    return statistics.median(seconds), max(seconds), stages


def _start_worker(checkpoint: str, workers: int) -> None:
    global _worker_service
    _worker_service = DetectorService.from_checkpoint(
        Path(checkpoint), BENCH, workers=workers, gpu=GPU
    )


def _analyze(clip: str) -> str:
    return _worker_service.analyze(Path(clip)).label


def videos_per_minute(checkpoint: Path, clip: Path, workers: int, videos: int) -> float:
    """`workers` processes, each with its own service on the GPU and its share of the cores."""
    context = multiprocessing.get_context("spawn")  # CUDA cannot be forked into children
    with context.Pool(workers, _start_worker, (str(checkpoint), workers)) as pool:
        pool.map(_analyze, [str(clip)] * workers)  # every worker started and warm
        started = time.perf_counter()
        pool.map(_analyze, [str(clip)] * videos, chunksize=1)
        return 60.0 * videos / (time.perf_counter() - started)


def decode_seconds(clip: Path, threads: int, hardware: bool) -> float:
    """Decode every frame of `clip` to RGB arrays, in software with `threads` or on NVDEC."""
    options = {}
    if hardware:
        from av.codec.hwaccel import HWAccel

        options["hwaccel"] = HWAccel(device_type="cuda", allow_software_fallback=False)
    started = time.perf_counter()
    with av.open(io.BytesIO(clip.read_bytes()), **options) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        for frame in container.decode(stream):
            frame.to_ndarray(format="rgb24")
    return time.perf_counter() - started


def compare_verdicts() -> float:
    """Largest |GPU - CPU fp32| video probability over the sample videos, with a network whose
    scores spread (so 0.02 means something) and the mean rule."""
    network, settings = seeded_network()
    rule = VerdictConfig(aggregation="mean", uncertain_band=0.0)
    gpu = DetectorService(network, settings, replace(BENCH, verdict=rule), "0" * 64, gpu=GPU)
    plain = replace(BENCH, engine=EngineConfig(inference_path="torch-fp32"), verdict=rule)
    cpu = DetectorService(network, settings, plain, "0" * 64)
    largest = 0.0
    for video in read_labels():
        on_gpu = gpu.analyze(video.path).verdict.fake_probability
        on_cpu = cpu.analyze(video.path).verdict.fake_probability
        if on_cpu is None or on_gpu is None:
            if on_cpu != on_gpu:
                return float("inf")  # a face found on one side only
            continue
        largest = max(largest, abs(on_gpu - on_cpu))
    return largest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", default=",".join(SERVED_CLIPS), help=f"some of {list(CLIPS)}")
    parser.add_argument("--requests", type=int, default=3, help="timed requests per clip")
    parser.add_argument("--workers", default="1,2,4", help="worker processes to measure")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_bench: no CUDA GPU here", file=sys.stderr)
        return 2
    report("device", f"{torch.cuda.get_device_name(GPU)}, torch {torch.__version__}")
    report("host", f"{cpu_model()}, {usable_cores()} usable cores")
    clips = {name: make_clip(name) for name in args.clips.split(",")}
    with tempfile.TemporaryDirectory(prefix="deepfake-gpu-bench-") as folder:
        checkpoint = random_checkpoint(
            Path(folder) / "best.pt", ModelSettings(name="gpu-bench-random", input_size=299)
        )
        service = DetectorService.from_checkpoint(checkpoint, BENCH, gpu=GPU)
        report(
            "path",
            f"{service.path.name} ({service.model_info.precision}), "
            f"{service.crops_per_batch} crops per batch",
        )
        # The host CPU's shipped path where OpenVINO is installed, else torch's best there.
        cpu_path = "auto" if find_spec("openvino") else "torch-fp32-cl"
        cpu_config = replace(BENCH, engine=EngineConfig(inference_path=cpu_path))
        cpu = DetectorService.from_checkpoint(checkpoint, cpu_config)
        for name, clip in clips.items():
            median, worst, stages = latency(service, clip, args.requests)
            stage_text = ", ".join(f"{stage} {ms:.0f} ms" for stage, ms in stages.items())
            report(f"{name} latency", f"median {median:.2f} s, max {worst:.2f} s ({stage_text})")
            cpu_median, _, _ = latency(cpu, clip, 1)
            report(f"{name} on this host's CPU ({cpu.path.name})", f"{cpu_median:.2f} s")
        first = clips[next(iter(clips))]
        for workers in (int(w) for w in args.workers.split(",")):
            rate = videos_per_minute(checkpoint, first, workers, 3 * workers)
            report(f"{workers} worker(s) on one GPU", f"{rate:.1f} videos/min ({first.stem})")
        biggest = clips.get("4k", first)
        for threads in (1, 4, usable_cores()):
            seconds = decode_seconds(biggest, threads, hardware=False)
            report(f"decode {biggest.stem}, {threads} thread(s)", f"{seconds:.2f} s")
        try:
            seconds = decode_seconds(biggest, 1, hardware=True)
            report(f"decode {biggest.stem}, NVDEC (PyAV hwaccel cuda)", f"{seconds:.2f} s")
        except Exception as error:  # a wheel or driver without NVDEC: say so, go on
            report("decode on NVDEC", f"not available: {error}")
        largest = compare_verdicts()
        within = "yes" if largest <= VERDICT_TOLERANCE else "NO"
        report("verdicts vs CPU fp32, every sample video", f"max |diff| {largest:.4f} ({within})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
