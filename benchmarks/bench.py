"""End-to-end benchmark: the straightforward path against the shipped one, side by side.

    python -m benchmarks.bench [--requests 5] [--clips 1080p,4k,720p-60s] [--checkpoint CKPT]

Makes its own H.264 clips with real faces (a sample video upscaled; cached in
benchmarks/clips/), archives one checkpoint per variant (the shipped model-config; a
straightforward handler's settings, BASELINE_SETTINGS; the shipped ones decoding in the
worker), serves each in its own real TorchServe on free loopback ports, all running at once,
and sends each clip's requests to
them in turn (one request at a time, the order rotating every round), so a slow minute on a
shared machine hits every variant alike. It reports per clip the median / p95 latency from POST
to response, the per-stage times the responses carry, the worker's CPU-seconds per request and
the floor they set (CPU-seconds / cores: no schedule of the stages can finish sooner on this
machine), and the workers' peak RSS; each stage beside its physical floor, the work itself
measured alone before the servers start (benchmarks/floors.py); then videos per minute with 1
and 2 workers under concurrent clients, one variant at a time. The last line:

    bench: <median> s/video, <ratio>x vs baseline, <ratio>x its floor of <s> s, <ratio>x the
        work's floor of <s> s, peak <MB> MB, cpu <model/flags>

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

import psutil
import torch
import yaml

from benchmarks.floors import STAGES, StageFloors, machine, measure_floors, measure_peak
from benchmarks.footage import CLIPS, SERVED_CLIPS, make_clip
from deploy.archive import DEFAULT_CONFIG, build_archive
from model.network import ModelSettings
from model.runtime import candidate_paths
from support.torchserve import RunningServer, serving, worker_processes
from support.weights import random_checkpoint

# The straightforward path, what a competent engineer writes in an afternoon: decode every frame
# with PyAV and keep every 20th, dlib HOG (RGB, no upsampling) on a copy at most 640 px wide, the
# FF++ crop, one torch fp32 forward pass over all of a clip's crops with channels-last input;
# no stage overlap, no sandbox, glibc's malloc as it comes.
BASELINE_SETTINGS = {
    "engine": {
        "skip_unsampled_frames": False,
        "overlap_stages": False,
        "inference_path": "torch-fp32-cl",
        "crops_per_batch": 64,  # the sampling's cap: every crop of a clip in one forward
        "return_large_buffers_to_os": False,
    },
    "detector": {"grey": False, "upsample": 0, "retry_with": None},
    "sandbox": {"enabled": False},  # decoded inside the worker, as such a handler would
}
# The shipped settings with uploads decoded inside the worker: the sandbox's cost is the
# difference between this variant and "shipped" (docs/security.md, the decoding sandbox).
IN_PROCESS_SETTINGS = {"sandbox": {"enabled": False}}


@dataclass
class ClipResult:
    latencies_s: list[float]
    stage_ms: dict[str, float]  # mean per request
    peak_rss_mb: float  # the worker's
    cpu_s: float  # the worker's CPU-seconds (all its threads, its decoding children) per request
    decoder_peak_rss_mb: float  # the sandbox's zygote plus one decoding child, at most

    @property
    def floor_s(self) -> float:
        """The least wall time this machine's cores could do the request's work in."""
        return self.cpu_s / len(psutil.Process().cpu_affinity())

    @property
    def median_s(self) -> float:
        return statistics.median(self.latencies_s)

    @property
    def p95_s(self) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def variant_config(overrides: dict[str, dict]) -> dict:
    """The shipped model config with `overrides` (section -> settings) in its `deepfake:` block;
    `build_archive` checks the result against the schema."""
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    block = config["deepfake"]
    for section, settings in overrides.items():
        block[section] = {**block.get(section, {}), **settings}
    return config


def archive_variant(
    checkpoint: Path, store: Path, overrides: dict, int8_split: Path | None = None
) -> None:
    config_file = store.parent / "model-config.yaml"
    config_file.write_text(yaml.safe_dump(variant_config(overrides)))
    build_archive(checkpoint, store, config_file=config_file, int8_split=int8_split)


class PeakRss:
    """Polls the servers' Python workers every 0.2 s and keeps each server's highest worker RSS.
    The process table is scanned once every 5 s (a scan costs ~3 ms here, a worker's
    memory_info ~0.02 ms), so the polling takes nothing measurable from the workers."""

    POLL_S, RESCAN_EVERY = 0.2, 25

    def __init__(self, servers: dict[str, RunningServer]) -> None:
        self.servers = servers
        self.peaks: dict[str, int] = dict.fromkeys(servers, 0)
        self.decoder_peaks: dict[str, int] = dict.fromkeys(servers, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        workers: dict[str, list[psutil.Process]] = {}
        polls = 0
        while not self._stop.is_set():
            if polls % self.RESCAN_EVERY == 0:  # workers restarted or scaled since the last scan
                workers = {label: worker_processes(s) for label, s in self.servers.items()}
            polls += 1
            for label, processes in workers.items():
                for process in processes:
                    with contextlib.suppress(psutil.Error):
                        rss = process.memory_info().rss
                        self.peaks[label] = max(self.peaks[label], rss)
                        decoders = sum(c.memory_info().rss for c in process.children(True))
                        self.decoder_peaks[label] = max(self.decoder_peaks[label], decoders)
            time.sleep(self.POLL_S)

    def peak_mb(self, label: str) -> float:
        return self.peaks[label] / 2**20

    def decoder_peak_mb(self, label: str) -> float:
        return self.decoder_peaks[label] / 2**20


def rotated(labels: list[str], round_index: int) -> list[str]:
    """The order of one round: each variant goes first in turn, so none always runs right
    after the slow baseline (or always first, on a cold cache)."""
    shift = round_index % len(labels)
    return labels[shift:] + labels[:shift]


def measure_clip(
    servers: dict[str, RunningServer], clip: Path, requests: int
) -> dict[str, ClipResult]:
    """`requests` timed requests of `clip` per server, interleaved round by round."""
    for server in servers.values():
        server.client.predict(clip)  # first request of a clip: page cache and allocator warm
    latencies: dict[str, list[float]] = {label: [] for label in servers}
    stages: dict[str, dict[str, float]] = {label: {} for label in servers}
    cpu_s: dict[str, float] = dict.fromkeys(servers, 0.0)
    with PeakRss(servers) as rss:
        for round_index in range(requests):
            for label in rotated(list(servers), round_index):
                before = worker_cpu_s(servers[label])
                started = time.perf_counter()
                report = servers[label].client.predict(clip)
                latencies[label].append(time.perf_counter() - started)
                cpu_s[label] += (worker_cpu_s(servers[label]) - before) / requests
                for stage, ms in report["timing_ms"].items():
                    stages[label][stage] = stages[label].get(stage, 0.0) + ms / requests
    return {
        label: ClipResult(
            latencies[label],
            stages[label],
            rss.peak_mb(label),
            cpu_s[label],
            rss.decoder_peak_mb(label),
        )
        for label in servers
    }


def worker_cpu_s(server: RunningServer) -> float:
    """User + system CPU-seconds the server's workers have used so far, all threads, with their
    sandbox zygotes and every decoding child those have reaped."""
    total = 0.0
    for worker in worker_processes(server):
        with contextlib.suppress(psutil.Error):
            times = worker.cpu_times()
            total += times.user + times.system
            for child in worker.children(recursive=True):
                times = child.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
    return total


def videos_per_minute(server: RunningServer, clip: Path, workers: int, videos: int) -> float:
    server.client.scale(workers)
    with ThreadPoolExecutor(max_workers=2 * workers) as pool:
        started = time.perf_counter()
        list(pool.map(lambda _: server.client.predict(clip), range(videos)))
        elapsed = time.perf_counter() - started
    return 60.0 * videos / elapsed


def start_variant(
    stack: contextlib.ExitStack,
    label: str,
    checkpoint: Path,
    overrides: dict,
    work: Path,
    probe_clip: Path,
    int8_split: Path | None = None,
) -> tuple[RunningServer, str]:
    """Archive and serve one variant for the life of `stack`; return the server and the
    inference path its worker chose (read from a one-frame request of `probe_clip`)."""
    store = work / label / "model_store"
    store.mkdir(parents=True)
    archive_variant(checkpoint, store, overrides, int8_split)
    server = stack.enter_context(serving(work / label / "torchserve", store))
    report = server.client.predict(probe_clip, {"frames": 1})
    return server, report["model"]["inference_path"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5, help="timed requests per clip")
    parser.add_argument("--clips", default=",".join(SERVED_CLIPS), help=f"some of {list(CLIPS)}")
    parser.add_argument("--checkpoint", type=Path, help="default: seeded random 299 px weights")
    parser.add_argument("--no-throughput", action="store_true", help="skip the 1/2-worker runs")
    parser.add_argument(
        "--int8-split",
        type=Path,
        help="training split.json: also run the shipped settings with an int8 model "
        "calibrated on it (make archive INT8_SPLIT=...)",
    )
    args = parser.parse_args(argv)

    cpu = machine()
    auto = ", ".join(path.name for path in candidate_paths("auto"))
    print(f"bench: CPU {cpu}; torch {torch.__version__}; auto candidates here: {auto}")
    clips = {name: make_clip(name) for name in args.clips.split(",")}
    floors: dict[str, StageFloors] = {}
    peak = measure_peak()
    for name, clip in clips.items():  # before any server starts: the work alone
        floors[name] = measure_floors(clip, peak)
        print(f"bench: {name} floors measured ({floors[name].crops} crops)", flush=True)
    with tempfile.TemporaryDirectory(prefix="deepfake-bench-") as folder:
        work = Path(folder)
        checkpoint = args.checkpoint
        if checkpoint is None:
            settings = ModelSettings(name="bench-random", input_size=299)
            checkpoint = random_checkpoint(work / "checkpoint" / "best.pt", settings)
        runs = [
            ("baseline", BASELINE_SETTINGS, None),
            ("shipped", {}, None),
            ("shipped-in-process", IN_PROCESS_SETTINGS, None),
        ]
        if args.int8_split:
            runs.append(("shipped-int8", {}, args.int8_split))
        first = next(iter(clips))
        servers: dict[str, RunningServer] = {}
        paths: dict[str, str] = {}
        with contextlib.ExitStack() as stack:
            for label, overrides, int8_split in runs:
                servers[label], paths[label] = start_variant(
                    stack, label, checkpoint, overrides, work, clips[first], int8_split
                )
                print(f"bench: {label} serving ({paths[label]})", flush=True)
            results: dict[str, dict[str, ClipResult]] = {label: {} for label in servers}
            for name, clip in clips.items():
                for label, result in measure_clip(servers, clip, args.requests).items():
                    results[label][name] = result
                print(f"bench: {name} measured", flush=True)
            throughput: dict[str, dict[int, float]] = {label: {} for label in servers}
            if not args.no_throughput:
                for label, server in servers.items():
                    for workers in (1, 2):
                        throughput[label][workers] = videos_per_minute(
                            server, clips[first], workers, 4 * workers
                        )
                    server.client.scale(1)  # idle again before the next variant's runs

    print()
    print(
        "| clip | path | median s | vs baseline | p95 s | CPU-s | floor s | decode ms | "
        "detect ms | classify ms | track ms | peak RSS MB | decoder RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in clips:
        baseline_s = results["baseline"][name].median_s
        for label, by_clip in results.items():
            result = by_clip[name]
            stage = result.stage_ms
            print(
                f"| {name} | {label} ({paths[label]}) | {result.median_s:.2f} | "
                f"{baseline_s / result.median_s:.1f}x | {result.p95_s:.2f} | "
                f"{result.cpu_s:.2f} | {result.floor_s:.2f} | "
                f"{stage.get('decode', 0):.0f} | {stage.get('detect', 0):.0f} | "
                f"{stage.get('classify', 0):.0f} | {stage.get('track', 0):.0f} | "
                f"{result.peak_rss_mb:.0f} | {result.decoder_peak_rss_mb:.0f} |"
            )
    print()
    print(
        "| clip | stage | work CPU-s | floor ms (all cores) | baseline ms | shipped ms | "
        "shipped / floor |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, floor in floors.items():
        for stage in STAGES:
            shipped_ms = results["shipped"][name].stage_ms.get(stage, 0.0)
            print(
                f"| {name} | {stage} | {floor.cpu_s(stage):.2f} | {floor.wall_ms(stage):.0f} | "
                f"{results['baseline'][name].stage_ms.get(stage, 0.0):.0f} | "
                f"{shipped_ms:.0f} | {shipped_ms / floor.wall_ms(stage):.1f}x |"
            )
        print(
            f"bench: {name} classify floor: {floor.crops} crops x {floor.gflop_per_crop:.1f} "
            f"GFLOP at a measured peak of {floor.peak_gflops:.0f} GFLOP/s "
            f"({floor.peak_dtype}, {floor.cores} cores)"
        )
    for label, rates in throughput.items():
        for workers, rate in rates.items():
            print(f"bench: {label}, {workers} worker(s): {rate:.1f} videos/min ({first})")
    for name, result in results["shipped"].items():
        # Linking faces into people (and any face descriptors it needed) after classification.
        track_s = result.stage_ms.get("track", 0.0) / 1000
        added = 100 * track_s / (result.median_s - track_s)
        print(
            f"bench: people tracking {1000 * track_s:.0f} ms of the {result.median_s:.2f} s "
            f"median on {name}: +{added:.1f}% over the rest of the request"
        )
    for name, result in results["shipped"].items():
        in_process = results["shipped-in-process"][name]
        cost_s = result.median_s - in_process.median_s
        print(
            f"bench: decoding sandbox on {name}: {1000 * cost_s:+.0f} ms "
            f"({100 * cost_s / in_process.median_s:+.1f}%) median, "
            f"{result.cpu_s - in_process.cpu_s:+.2f} CPU-s per request, decoder peak "
            f"{result.decoder_peak_rss_mb:.0f} MB beside the worker's {result.peak_rss_mb:.0f} MB"
        )
    shipped, baseline = results["shipped"][first], results["baseline"][first]
    peak = max(result.peak_rss_mb for result in results["shipped"].values())
    work_floor_s = floors[first].request_s
    print(
        f"bench: {shipped.median_s:.2f} s/video, {baseline.median_s / shipped.median_s:.1f}x vs "
        f"baseline, {shipped.median_s / shipped.floor_s:.2f}x its floor of "
        f"{shipped.floor_s:.2f} s, {shipped.median_s / work_floor_s:.1f}x the work's floor of "
        f"{work_floor_s:.2f} s, peak {peak:.0f} MB, cpu {cpu}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
