"""Score videos on a running deepfake-serve TorchServe, print verdicts, draw contact sheets.

python -m client VIDEO_OR_FOLDER... [--sheet sheet.png] [--output results.txt] [--json F]
python -m client VIDEO --report report.pdf   # evidence report (+ report.pdf.json sidecar)
python -m client --wait          # block until the model has a READY worker
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from client.api import DeepfakeClient, ServerAddress, ServerError
from client.report import evidence_record, write_evidence_report
from client.sheet import write_contact_sheet
from protocol.wire import (
    AGGREGATIONS,
    INFERENCE_URL,
    KEY_FILE,
    MANAGEMENT_URL,
    MODEL_NAME,
    find_videos,
    person_result_name,
    result_line,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="*", type=Path, help="video files or folders")
    parser.add_argument("--inference-url", default=INFERENCE_URL)
    parser.add_argument("--management-url", default=MANAGEMENT_URL)
    parser.add_argument("--key-file", type=Path, default=Path(KEY_FILE))
    parser.add_argument("--no-auth", action="store_true", help="token authorization is off")
    parser.add_argument("--model", default=MODEL_NAME)
    parser.add_argument("--wait", action="store_true", help="first wait for a READY worker")
    parser.add_argument("--wait-timeout", type=float, default=300.0)
    parser.add_argument("--frames", type=int, help="analyse N evenly spaced frames")
    parser.add_argument("--interval", type=int, help="analyse every N-th frame")
    parser.add_argument("--aggregation", choices=AGGREGATIONS, help="per-video rule")
    parser.add_argument("--output", type=Path, help="also write results.txt-style lines here")
    parser.add_argument("--json", type=Path, help="write every full response to this file")
    parser.add_argument("--sheet", type=Path, help="write a contact sheet PNG of the faces")
    parser.add_argument(
        "--report",
        type=Path,
        help="write an evidence report: FILE.pdf for one video, else a folder of <video>.pdf "
        "(each with a .pdf.json sidecar); asks for explanations",
    )
    args = parser.parse_args(argv)

    address = ServerAddress(
        inference_url=args.inference_url,
        management_url=args.management_url,
        key_file=None if args.no_auth else args.key_file,
        model=args.model,
    )
    client = DeepfakeClient(address)
    if args.wait:
        try:
            client.wait_ready(args.wait_timeout)
        except TimeoutError as error:
            print(f"client: {error}", file=sys.stderr)
            return 1
        print(f"client: {args.model} is ready at {args.inference_url}")
    paths = find_videos(args.videos)
    if not paths:
        return 0 if args.wait else _usage_error(parser)
    options = {
        name: value
        for name, value in (
            ("frames", args.frames),
            ("interval", args.interval),
            ("aggregation", args.aggregation),
            ("crops", "true" if args.sheet or args.report else None),
        )
        if value is not None
    }
    reports_to = report_paths(args.report, paths) if args.report else {}
    reports, lines, failures = {}, [], 0
    for path in paths:
        try:
            report = client.explain(path, options) if args.report else client.predict(path, options)
        except ServerError as error:
            found = [result_line(str(path), None, None, str(error))]
            failures += 1
        else:
            reports[str(path)] = report
            found = [result_line(str(path), report["label"], report["fake_probability"])]
            for person in report.get("people", []):  # schema 1.1: a line per person
                name = person_result_name(str(path), person["person_id"])
                found.append(result_line(name, person["label"], person["fake_probability"]))
        lines += found
        print("\n".join(found), flush=True)
        if path in reports_to and str(path) in reports:
            record = evidence_record(path.name, path.read_bytes(), reports[str(path)])
            sidecar = write_evidence_report(record, reports_to[path])
            print(f"client: evidence report {reports_to[path]} (record {sidecar})")
    if args.output:
        args.output.write_text("\n".join(lines) + "\n")
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2) + "\n")
    if args.sheet and reports:
        write_contact_sheet(reports, args.sheet)
        print(f"client: contact sheet {args.sheet}")
    print(f"client: {len(paths) - failures}/{len(paths)} videos scored")
    return 1 if failures == len(paths) else 0


def report_paths(target: Path, videos: list[Path]) -> dict[Path, Path]:
    """Where each video's report goes: `target` itself for one video named *.pdf, else
    `target/<video name>.pdf` (the folder made if needed)."""
    if len(videos) == 1 and target.suffix.lower() == ".pdf":
        target.parent.mkdir(parents=True, exist_ok=True)
        return {videos[0]: target}
    target.mkdir(parents=True, exist_ok=True)
    names: dict[Path, Path] = {}
    for number, video in enumerate(videos, start=1):
        name = f"{video.name}.pdf"
        if target / name in names.values():  # two videos of one name in different folders
            name = f"{number}-{name}"
        names[video] = target / name
    return names


def _usage_error(parser: argparse.ArgumentParser) -> int:
    parser.print_usage(sys.stderr)
    print("client: give video files or folders, or --wait", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
