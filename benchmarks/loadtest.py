"""Bounded load test against a real TorchServe on loopback, 2 workers.

    python -m benchmarks.loadtest [--requests 200] [--clients 8] [--time-limit-s 600]

1. Each valid video (sample videos) is scored alone: the reference verdicts.
2. `--requests` uploads, valid and invalid mixed (corpus cases), from `--clients` concurrent
   clients; stops at the request count or the time limit. Every valid answer must equal its
   reference verdict; every invalid one must get its documented 4xx.
3. Unless --no-kill: the same load again while one worker process is killed (SIGKILL) mid-way;
   TorchServe must restart it, and only requests in flight on that worker may fail.

Ends with one line:

    loadtest: <answered>/<sent> answered, <n> unexpected errors, p95 <ms> ms
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

from deploy.archive import DEFAULT_CONFIG, build_archive
from model.network import ModelSettings
from support.bad_inputs import CORPUS, Case
from support.samples import SAMPLE_DATA
from support.torchserve import RunningServer, serving, worker_processes
from support.weights import random_checkpoint

REPO = Path(__file__).resolve().parent.parent
SAMPLE_VIDEOS = SAMPLE_DATA / "videos"
INVALID_CASES = ("random bytes", "PNG image", "mp4 cut at 50%", "empty body", "audio only")
FRAMES = "4"  # per request: keeps one request near a second on 2 cores
# Requests one worker holds at once: a killed worker fails at most these.
BATCH_SIZE = int(yaml.safe_load(DEFAULT_CONFIG.read_text())["batchSize"])


@dataclass(frozen=True)
class Upload:
    name: str
    body: bytes
    expected_status: int
    expected_error: str | None = None


@dataclass
class Outcome:
    upload: Upload
    status: int | None  # None: no HTTP answer (connection error, timeout)
    latency_ms: float
    body: dict | None
    error: str | None = None


@dataclass
class Phase:
    outcomes: list[Outcome] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    @property
    def answered(self) -> int:
        return sum(outcome.status is not None for outcome in self.outcomes)

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in self.outcomes:
            key = str(outcome.status) if outcome.status is not None else "no answer"
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items()))

    def percentile_ms(self, q: float) -> float:
        latencies = sorted(o.latency_ms for o in self.outcomes if o.status is not None)
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, round(q * (len(latencies) - 1)))]


def uploads() -> list[Upload]:
    valid = [
        Upload(path.name, path.read_bytes(), 200) for path in sorted(SAMPLE_VIDEOS.rglob("*.mp4"))
    ]
    if not valid:
        raise SystemExit(f"loadtest: no sample videos under {SAMPLE_VIDEOS}")
    cases: dict[str, Case] = {case.name: case for case in CORPUS}
    invalid = [
        Upload(name, cases[name].make(), cases[name].status, cases[name].error)
        for name in INVALID_CASES
    ]
    return valid + invalid


def send(server: RunningServer, upload: Upload) -> Outcome:
    url = f"{server.client.address.inference_url}/predictions/deepfake"
    headers = {
        **server.client.auth_headers("inference"),
        "Content-Type": "application/octet-stream",
        "X-Deepfake-Frames": FRAMES,
    }
    started = time.perf_counter()
    try:
        response = requests.post(url, data=upload.body, headers=headers, timeout=300)
    except requests.RequestException as error:
        return Outcome(upload, None, _ms(started), None, type(error).__name__)
    try:
        body = response.json()
    except ValueError:
        body = None
    return Outcome(upload, response.status_code, _ms(started), body)


def check(outcome: Outcome, reference: dict[str, dict]) -> str | None:
    """Why this answer is not the expected one, or None."""
    upload = outcome.upload
    if outcome.status != upload.expected_status:
        return (
            f"{upload.name}: status {outcome.status} ({outcome.error}), "
            f"expected {upload.expected_status}"
        )
    if upload.expected_status != 200:
        if not outcome.body or outcome.body.get("error") != upload.expected_error:
            return f"{upload.name}: body {outcome.body}, expected error {upload.expected_error}"
        return None
    solo = reference[upload.name]
    got = outcome.body or {}
    probability = got.get("fake_probability")
    if got.get("label") == solo["label"] and _close(probability, solo["fake_probability"]):
        return None
    return (
        f"{upload.name}: {got.get('label')} {probability}, "
        f"alone {solo['label']} {solo['fake_probability']}"
    )


def run_load(
    server: RunningServer,
    pool: list[Upload],
    count: int,
    clients: int,
    deadline: float,
    seed: int,
    during: threading.Event | None = None,
) -> Phase:
    """`count` uploads drawn from `pool` (seeded), `clients` at a time, none started after
    `deadline`. `during` is set once half of them have been sent."""
    order = random.Random(seed).choices(pool, k=count)
    phase = Phase()
    sent = 0
    lock = threading.Lock()

    def one(upload: Upload) -> None:
        nonlocal sent
        if time.monotonic() > deadline:
            return
        with lock:
            sent += 1
            if during is not None and sent == count // 2:
                during.set()
        outcome = send(server, upload)
        with lock:
            phase.outcomes.append(outcome)

    with ThreadPoolExecutor(max_workers=clients) as executor:
        list(executor.map(one, order))
    return phase


def kill_one_worker(server: RunningServer, start: threading.Event) -> dict[str, float]:
    """Wait for `start`, SIGKILL one worker, then time until TorchServe has 2 ready again."""
    start.wait()
    victim = worker_processes(server)[0]
    victim.kill()
    killed_at = time.monotonic()
    while True:
        time.sleep(0.5)
        alive = [p for p in worker_processes(server) if p.pid != victim.pid]
        if len(alive) >= 2 and server.client.ready_workers() >= 2:
            return {"pid": victim.pid, "recovered_s": time.monotonic() - killed_at}
        if time.monotonic() - killed_at > 240:
            return {"pid": victim.pid, "recovered_s": float("nan")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--time-limit-s", type=float, default=600.0, help="per load phase")
    parser.add_argument("--checkpoint", type=Path, help="default: seeded random 160 px weights")
    parser.add_argument("--no-kill", action="store_true", help="skip the worker-kill phase")
    args = parser.parse_args(argv)

    pool = uploads()
    with tempfile.TemporaryDirectory(prefix="deepfake-loadtest-") as folder:
        work = Path(folder)
        settings = ModelSettings(name="loadtest-random", input_size=160)
        checkpoint = args.checkpoint or random_checkpoint(work / "checkpoint" / "best.pt", settings)
        build_archive(checkpoint, work / "store")
        with serving(work / "torchserve", work / "store") as server:
            server.client.scale(2)
            reference = {}
            for upload in pool:
                if upload.expected_status == 200:
                    outcome = send(server, upload)
                    if outcome.status != 200:
                        raise SystemExit(f"loadtest: {upload.name} alone got {outcome.status}")
                    reference[upload.name] = outcome.body
            print(
                f"loadtest: {len(reference)} valid videos scored alone, "
                f"{len(pool) - len(reference)} invalid kinds, 2 workers, {args.clients} clients"
            )
            deadline = time.monotonic() + args.time_limit_s
            load = run_load(server, pool, args.requests, args.clients, deadline, seed=0)
            load.unexpected = [
                why for o in load.outcomes if (why := check(o, reference)) is not None
            ]
            _report("load", load, args.requests)
            unexpected = len(load.unexpected)
            if not args.no_kill:
                unexpected += _kill_phase(server, pool, reference, args)
    print(
        f"loadtest: {load.answered}/{args.requests} answered, {unexpected} unexpected errors, "
        f"p95 {load.percentile_ms(0.95):.0f} ms"
    )
    return 0 if unexpected == 0 and load.answered == args.requests else 1


def _kill_phase(server: RunningServer, pool: list[Upload], reference: dict, args) -> int:
    """Load while one worker is killed: failures allowed only for that worker's batch."""
    half_sent = threading.Event()
    recovery: dict[str, float] = {}
    killer = threading.Thread(
        target=lambda: recovery.update(kill_one_worker(server, half_sent)), daemon=True
    )
    killer.start()
    count = max(40, args.requests // 4)
    deadline = time.monotonic() + args.time_limit_s
    phase = run_load(server, pool, count, args.clients, deadline, seed=1, during=half_sent)
    killer.join(timeout=300)
    failed = [o for o in phase.outcomes if o.status is None or o.status >= 500]
    phase.unexpected = [
        why for o in phase.outcomes if o not in failed and (why := check(o, reference)) is not None
    ]
    _report("kill", phase, count)
    print(
        f"loadtest: killed worker pid {recovery.get('pid')}; TorchServe had 2 ready workers "
        f"again after {recovery.get('recovered_s', float('nan')):.1f} s; {len(failed)} "
        f"request(s) failed with it (at most {BATCH_SIZE}, one batch, allowed): "
        f"{sorted({str(o.status or o.error) for o in failed})}"
    )
    excess = max(0, len(failed) - BATCH_SIZE)
    recovered = math.isfinite(recovery.get("recovered_s", math.nan))
    return len(phase.unexpected) + excess + (0 if recovered else 1)


def _report(label: str, phase: Phase, count: int) -> None:
    print(
        f"loadtest [{label}]: sent {len(phase.outcomes)}/{count}, answered {phase.answered}, "
        f"statuses {phase.status_counts()}, p50 {phase.percentile_ms(0.5):.0f} ms, "
        f"p95 {phase.percentile_ms(0.95):.0f} ms, unexpected {len(phase.unexpected)}"
    )
    for why in phase.unexpected[:10]:
        print(f"loadtest [{label}]: unexpected: {why}")


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= 1e-4


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


if __name__ == "__main__":
    sys.exit(main())
