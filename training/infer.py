"""Score a folder of videos with a checkpoint and write one line per video and per person.

    python -m training.infer --video-dir videos/infer --output results.txt [--checkpoint CKPT]

Lines read `<file> <fake probability> <label>`, `<file> no_face no_face` when no face was found,
or `<file> error: <why>` for a file that is not a readable video; the run goes on past errors.
After a video's line, one per person in it: `<file>#person-<id> <fake probability> <label>`.
Every file under the folder is tried, whatever its name (`<file>` is its path relative to the
folder; parse lines from the right, names may hold spaces). Same pipeline and aggregation as
the server.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from model.config import ServiceConfig
from model.network import DEFAULT_CHECKPOINT
from model.schema import add_arguments, parse_command
from model.service import DetectorService
from model.verdict import VerdictConfig
from model.video import SamplingConfig
from protocol.wire import person_result_name, result_line
from training.scoring import VideoOutcome, analyze_files


@dataclass(frozen=True)
class InferCommand:
    """`python -m training.infer`'s settings, a flag per field."""

    video_dir: Path = Path("videos/infer")
    output: Path = Path("results.txt")
    checkpoint: Path = DEFAULT_CHECKPOINT
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    verdict: VerdictConfig = field(default_factory=VerdictConfig)


def outcome_lines(outcome: VideoOutcome, video_dir: Path) -> list[str]:
    """The video's line, then one per person in it."""
    name = str(outcome.path.relative_to(video_dir))
    verdict = outcome.verdict
    if verdict is None:
        return [result_line(name, None, None, outcome.error or "")]
    return [result_line(name, verdict.label, verdict.fake_probability)] + [
        result_line(person_result_name(name, p.person.person_id), p.label, p.fake_probability)
        for p in verdict.people
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, InferCommand)
    command = parse_command(parser, InferCommand, argv)

    paths = sorted(
        path
        for path in command.video_dir.rglob("*")
        if path.is_file() and not path.name.startswith(".")
    )
    if not paths:
        print(f"infer: no files in {command.video_dir}", file=sys.stderr)
        return 1
    served = ServiceConfig(sampling=command.sampling, verdict=command.verdict)
    service = DetectorService.from_checkpoint(command.checkpoint, served)
    errors = 0
    with open(command.output, "w") as results:
        for outcome in analyze_files(paths, service):
            results.writelines(line + "\n" for line in outcome_lines(outcome, command.video_dir))
            errors += outcome.error is not None
    print(f"infer: scored {len(paths)} files into {command.output} ({errors} unreadable)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
