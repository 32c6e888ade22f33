"""Seeded, bounded mutation fuzzing of everything that parses an upload: the sandboxed decoder
and the worker's own readers of the same bytes (MP4 box facts, Content Credentials).

    python -m tools.fuzz [--cases 3000] [--seed 0] [--seconds 300] [--save-findings DIR]

Seeds are the sample videos and the bad-input corpus's files (support/bad_inputs.py). Each
case mutates one seed by bit flips, a truncation, a box splice (an ISO box cut out, doubled or
taken from another file) or a box length edit, then decodes it through `DecoderSandbox` as the
server does and, when it decodes, reads its provenance as the worker does. Every outcome must
be a clean one: frames, or an error the API answers with a 4xx (VideoInputError and its kinds,
a decoder crash included). Anything else, and a zygote that had to be restarted, is a finding;
the exit status is 1 when there is any. Same seed, same cases.
"""

from __future__ import annotations

import argparse
import collections
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.credentials import CredentialsConfig
from model.errors import DecoderCrashedError, VideoInputError
from model.provenance import ProvenanceReader
from model.sandbox import DecoderSandbox
from model.schema import add_arguments, parse_command
from model.video import SamplingConfig, VideoLimits
from support.bad_inputs import CORPUS, CORPUS_MAX_REQUEST_BYTES

# A few frames per case: the parsers are what is fuzzed, not the decoding of long videos.
SAMPLING = SamplingConfig(interval=10, max_frames=4)
LIMITS = VideoLimits(max_decode_s=10.0)
MAX_SEED_BYTES = 4_000_000  # larger seeds make slow cases and find nothing new


@dataclass(frozen=True)
class Outcome:
    kind: str  # "decoded", the class of a clean error, or "unclean"
    detail: str = ""


def iso_boxes(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of every ISO box found by walking the top level and the containers
    that hold boxes (moov, trak, mdia, minf, stbl, udta, edts); stops at anything malformed."""
    found: list[tuple[int, int]] = []
    containers = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"udta", b"edts"}

    def walk(start: int, end: int) -> None:
        offset = start
        while offset + 8 <= end:
            size, kind = struct.unpack(">I4s", data[offset : offset + 8])
            if size < 8 or offset + size > end:
                return
            found.append((offset, size))
            if kind in containers:
                walk(offset + 8, offset + size)
            offset += size

    walk(0, len(data))
    return found


def flip_bits(data: bytes, rng: np.random.Generator, seeds: list[bytes]) -> bytes:
    mutated = bytearray(data)
    # Headers and indexes sit near the start (or, without faststart, near the end): aim there.
    span = min(len(mutated), 4096) if rng.random() < 0.5 else len(mutated)
    for _ in range(int(rng.integers(1, 17))):
        position = (
            int(rng.integers(0, span)) if rng.random() < 0.7 else int(rng.integers(0, len(mutated)))
        )
        mutated[position] ^= 1 << int(rng.integers(0, 8))
    return bytes(mutated)


def truncate(data: bytes, rng: np.random.Generator, seeds: list[bytes]) -> bytes:
    return data[: int(rng.integers(1, max(2, len(data))))]


def splice_box(data: bytes, rng: np.random.Generator, seeds: list[bytes]) -> bytes:
    boxes = iso_boxes(data)
    if not boxes:
        return flip_bits(data, rng, seeds)
    offset, size = boxes[int(rng.integers(0, len(boxes)))]
    box = data[offset : offset + size]
    choice = rng.random()
    if choice < 0.33:  # cut it out
        return data[:offset] + data[offset + size :]
    if choice < 0.66:  # doubled
        return data[: offset + size] + box + data[offset + size :]
    donor = seeds[int(rng.integers(0, len(seeds)))]  # replaced by another file's box
    donor_boxes = iso_boxes(donor)
    if not donor_boxes:
        return data[:offset] + data[offset + size :]
    donor_offset, donor_size = donor_boxes[int(rng.integers(0, len(donor_boxes)))]
    return data[:offset] + donor[donor_offset : donor_offset + donor_size] + data[offset + size :]


def edit_length(data: bytes, rng: np.random.Generator, seeds: list[bytes]) -> bytes:
    boxes = iso_boxes(data)
    if not boxes:
        return truncate(data, rng, seeds)
    offset, size = boxes[int(rng.integers(0, len(boxes)))]
    candidates = [0, 1, 7, 8, size - 1, size + 1, size * 2, 2**31 - 1, 2**32 - 1]
    new_size = candidates[int(rng.integers(0, len(candidates)))] % 2**32
    return data[:offset] + struct.pack(">I", new_size) + data[offset + 4 :]


MUTATIONS: dict[str, Callable[[bytes, np.random.Generator, list[bytes]], bytes]] = {
    "bit flips": flip_bits,
    "truncation": truncate,
    "box splice": splice_box,
    "length edit": edit_length,
}


def seed_files(sample_data: Path | None) -> list[bytes]:
    seeds = [
        case.make() for case in CORPUS if case.status != 413 or case.error is not None
    ]  # the over-size upload is refused by TorchServe before any parser sees it
    if sample_data is not None and sample_data.is_dir():
        for path in sorted(sample_data.glob("videos/*/*.mp4")):
            if path.stat().st_size <= MAX_SEED_BYTES:
                seeds.append(path.read_bytes())
    return [
        seed for seed in seeds if 0 < len(seed) <= min(MAX_SEED_BYTES, CORPUS_MAX_REQUEST_BYTES)
    ]


def run_case(sandbox: DecoderSandbox, provenance: ProvenanceReader, data: bytes) -> Outcome:
    try:
        with sandbox.open(data, 1, LIMITS) as reader:
            facts = reader.facts
            for _ in reader.sample(SAMPLING):
                pass
        provenance.read(data, facts)
        return Outcome("decoded")
    except DecoderCrashedError as error:
        return Outcome("DecoderCrashedError", str(error))
    except VideoInputError as error:  # every kind the API answers with a 4xx
        return Outcome(type(error).__name__)
    except Exception as error:  # the finding this tool exists for
        return Outcome("unclean", f"{type(error).__name__}: {error}")


@dataclass
class FuzzRun:
    counts: collections.Counter
    failures: list[str]  # unclean outcomes and zygote restarts: the run fails on any
    crashes: list[str]  # decoder crashes: answered cleanly (422), kept for the corpus
    elapsed_s: float


def fuzz(
    cases: int, seed: int, seconds: float, sample_data: Path | None, keep: Path | None = None
) -> FuzzRun:
    """Up to `cases` cases, or `seconds`; `keep`: a folder for the bytes of each failure and
    crash."""
    rng = np.random.default_rng(seed)
    seeds = seed_files(sample_data)
    sandbox = DecoderSandbox()
    provenance = ProvenanceReader(CredentialsConfig())
    run = FuzzRun(collections.Counter(), [], [], 0.0)
    started = time.perf_counter()
    try:
        sandbox.start()
        zygote = sandbox.zygote_pid
        for number in range(cases):
            if time.perf_counter() - started > seconds:
                break
            name = list(MUTATIONS)[int(rng.integers(0, len(MUTATIONS)))]
            source = int(rng.integers(0, len(seeds)))
            data = MUTATIONS[name](seeds[source], rng, seeds)
            outcome = run_case(sandbox, provenance, data)
            run.counts[outcome.kind] += 1
            where = f"case {number} ({name} of seed {source})"
            if sandbox.zygote_pid != zygote:
                run.failures.append(f"{where}: the zygote had to be restarted")
                zygote = sandbox.zygote_pid
            elif outcome.kind == "unclean":
                run.failures.append(f"{where}: {outcome.detail}")
            elif outcome.kind == "DecoderCrashedError":
                run.crashes.append(f"{where}: {outcome.detail}")
            else:
                continue
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                (keep / f"seed{seed}-case{number}.bin").write_bytes(data)
    finally:
        sandbox.close()
    run.elapsed_s = time.perf_counter() - started
    return run


@dataclass(frozen=True)
class FuzzCommand:
    """`python -m tools.fuzz`'s settings, a flag per field."""

    cases: int = 3000
    seed: int = 0
    seconds: float = field(default=300.0, metadata={"help": "stop after this long"})
    sample_data: Path | None = Path("../shared/data")
    save_findings: Path | None = field(
        default=None, metadata={"help": "keep failing and crashing inputs here"}
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, FuzzCommand)
    command = parse_command(parser, FuzzCommand, argv)
    run = fuzz(command.cases, command.seed, command.seconds, command.sample_data,
               command.save_findings)  # fmt: skip
    total = sum(run.counts.values())
    print(
        f"fuzz: {total} cases in {run.elapsed_s:.0f} s ({total / run.elapsed_s:.1f}/s), "
        f"seed {command.seed}"
    )
    for kind, count in run.counts.most_common():
        print(f"fuzz:   {kind}: {count}")
    for crash in run.crashes:
        print(f"fuzz: decoder crash (answered 422): {crash}")
    for failure in run.failures:
        print(f"fuzz: FAILURE: {failure}")
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())
