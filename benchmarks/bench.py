"""End-to-end benchmark: the straightforward path against the shipped one, side by side.

    python -m benchmarks.bench [--requests 5] [--clips 1080p,4k,720p-60s] [--checkpoint CKPT]

Makes its own H.264 clips with real faces (a sample video upscaled; cached in
benchmarks/clips/), archives one checkpoint twice (the shipped model-config, and the same with
the baseline settings: torch fp32 NCHW, RGB detection at upsample 1), serves each in a real
TorchServe on free loopback ports, and reports per clip the median / p95 latency from POST to
response, the per-stage times the responses carry and the workers' peak RSS; then videos per
minute with 1 and 2 workers under concurrent clients. The last line:

    bench: <median s/video> s/video, <ratio>x vs baseline, peak <MB> MB, cpu <model/flags>

Timings depend on the weights only through the input size: by default a seeded random 299 px
checkpoint is used, the size production models have.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import psutil
import torch
import yaml

from handler.archive import DEFAULT_CONFIG, build_archive
from model.cpu import cpu_flags, cpu_model
from model.network import ModelSettings
from model.runtime import BASELINE_PATH, candidate_paths
from tests.torchserve_harness import RunningServer, random_checkpoint, serving, worker_processes

REPO = Path(__file__).resolve().parent.parent
SAMPLE_VIDEO = REPO.parent / "shared" / "data" / "videos" / "real" / "a_wolfgang_c1.mp4"
CLIP_DIR = REPO / "benchmarks" / "clips"
# name -> (width, height, seconds) at 30 fps
CLIPS = {"1080p": (1920, 1080, 10), "4k": (3840, 2160, 10), "720p-60s": (1280, 720, 60)}
# The straightforward path: every frame decoded, then dlib's RGB HOG with one upsampling on each
# sampled frame, then torch fp32 NCHW on all of a short clip's crops in one forward pass.
BASELINE_SETTINGS = {
    "skip_unsampled_frames": False,
    "overlap_stages": False,
    "inference_path": BASELINE_PATH,
    "detect_grey": False,
    "upsample": 1,
    "retry_upsample": None,
    "batch_size": 16,
}
REPORTED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni")


@dataclass
class ClipResult:
    latencies_s: list[float]
    stage_ms: dict[str, float]  # mean per request
    peak_rss_mb: float

    @property
    def median_s(self) -> float:
        return statistics.median(self.latencies_s)

    @property
    def p95_s(self) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


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


def archive_variant(
    checkpoint: Path, store: Path, overrides: dict, int8_split: Path | None = None
) -> None:
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    config["deepfake"] = {**config["deepfake"], **overrides}
    config_file = store.parent / "model-config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    build_archive(checkpoint, store, config_file=config_file, int8_split=int8_split)


class PeakRss:
    """Polls the server's Python workers and keeps each one's highest RSS."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.is_set():
            for process in worker_processes(self.server):
                with contextlib.suppress(psutil.Error):
                    rss = process.memory_info().rss
                    self.peaks[process.pid] = max(self.peaks.get(process.pid, 0), rss)
            time.sleep(0.2)

    @property
    def peak_mb(self) -> float:
        return max(self.peaks.values(), default=0) / 2**20


def measure_clip(server: RunningServer, clip: Path, requests: int) -> ClipResult:
    client = server.client
    client.predict(clip)  # first request of a clip: page cache and allocator warm
    latencies, stages = [], {}
    with PeakRss(server) as rss:
        for _ in range(requests):
            started = time.perf_counter()
            report = client.predict(clip)
            latencies.append(time.perf_counter() - started)
            for stage, ms in report["timing_ms"].items():
                stages[stage] = stages.get(stage, 0.0) + ms / requests
    return ClipResult(latencies, stages, rss.peak_mb)


def videos_per_minute(server: RunningServer, clip: Path, workers: int, videos: int) -> float:
    server.client.scale(workers)
    with ThreadPoolExecutor(max_workers=2 * workers) as pool:
        started = time.perf_counter()
        list(pool.map(lambda _: server.client.predict(clip), range(videos)))
        elapsed = time.perf_counter() - started
    return 60.0 * videos / elapsed


def run_variant(
    label: str,
    checkpoint: Path,
    overrides: dict,
    clips: dict[str, Path],
    args,
    work: Path,
    int8_split: Path | None = None,
) -> tuple[dict[str, ClipResult], dict[int, float], str]:
    store = work / label / "model_store"
    store.mkdir(parents=True)
    archive_variant(checkpoint, store, overrides, int8_split)
    with serving(work / label / "torchserve", store) as server:
        path = server.client.predict(clips[next(iter(clips))], {"frames": 1})["model"]
        results = {name: measure_clip(server, clip, args.requests) for name, clip in clips.items()}
        throughput = {}
        if not args.no_throughput:
            first = clips[next(iter(clips))]
            for workers in (1, 2):
                throughput[workers] = videos_per_minute(server, first, workers, 4 * workers)
    return results, throughput, path["inference_path"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5, help="timed requests per clip")
    parser.add_argument("--clips", default=",".join(CLIPS), help=f"some of {list(CLIPS)}")
    parser.add_argument("--checkpoint", type=Path, help="default: seeded random 299 px weights")
    parser.add_argument("--no-throughput", action="store_true", help="skip the 1/2-worker runs")
    parser.add_argument(
        "--int8-split",
        type=Path,
        help="training split.json: also run the shipped settings with an int8 model "
        "calibrated on it (make archive INT8_SPLIT=...)",
    )
    args = parser.parse_args(argv)

    flags = sorted(flag for flag in REPORTED_FLAGS if flag in cpu_flags())
    cpu = f"{cpu_model()} ({len(psutil.Process().cpu_affinity())} cores; {' '.join(flags)})"
    auto = ", ".join(path.name for path in candidate_paths("auto"))
    print(f"bench: CPU {cpu}; torch {torch.__version__}; auto candidates here: {auto}")
    clips = {name: make_clip(name) for name in args.clips.split(",")}
    with tempfile.TemporaryDirectory(prefix="deepfake-bench-") as folder:
        work = Path(folder)
        checkpoint = args.checkpoint
        if checkpoint is None:
            settings = ModelSettings(name="bench-random", input_size=299)
            checkpoint = random_checkpoint(work / "checkpoint" / "best.pt", settings)
        runs = [("baseline", BASELINE_SETTINGS, None), ("shipped", {}, None)]
        if args.int8_split:
            runs.append(("shipped-int8", {}, args.int8_split))
        variants = {}
        for label, overrides, int8_split in runs:
            variants[label] = run_variant(
                label, checkpoint, overrides, clips, args, work, int8_split
            )
            print(f"bench: {label} done ({variants[label][2]})", flush=True)

    print()
    print("| clip | path | median s | p95 s | decode ms | detect ms | classify ms | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for name in clips:
        for label, (results, _, path) in variants.items():
            result = results[name]
            stage = result.stage_ms
            print(
                f"| {name} | {label} ({path}) | {result.median_s:.2f} | {result.p95_s:.2f} | "
                f"{stage.get('decode', 0):.0f} | {stage.get('detect', 0):.0f} | "
                f"{stage.get('classify', 0):.0f} | {result.peak_rss_mb:.0f} |"
            )
    for label, (_, throughput, _) in variants.items():
        for workers, rate in throughput.items():
            print(
                f"bench: {label}, {workers} worker(s): {rate:.1f} videos/min ({next(iter(clips))})"
            )
    first = next(iter(clips))
    shipped, baseline = variants["shipped"][0][first], variants["baseline"][0][first]
    peak = max(result.peak_rss_mb for result in variants["shipped"][0].values())
    print(
        f"bench: {shipped.median_s:.2f} s/video, {baseline.median_s / shipped.median_s:.1f}x vs "
        f"baseline, peak {peak:.0f} MB, cpu {cpu}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
