"""What the web page shows, made from the server's report (docs/api.md): plain
functions of dicts, so the words a non-expert reads are tested without a browser."""

from __future__ import annotations

import csv
import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from client.report import HEADLINES, representative_crops
from client.sheet import decode_image_base64
from protocol.wire import NO_FACE

EXPLAINED = {
    "fake": "The detector scored the faces in this video as more likely face-swapped than real.",
    "real": "The detector scored the faces in this video as more likely real than face-swapped.",
    "uncertain": (
        "The detector's score is too close to its threshold to call this video either way: "
        "look at the faces and the timeline below, and weigh other evidence."
    ),
    "no_face": (
        "The face detector found no face in the frames it looked at, so the model "
        "gave no score. Try more frames, or a video where a face is clearly visible."
    ),
}
CAVEAT = (
    "What this can and cannot tell you: the model looks for a face blended into a frame, the "
    "trace face swaps leave. It learnt that trace from real faces blended onto themselves "
    "(self-blended images), not from any one swap tool, and is checked on swaps of people it "
    "never saw. It can miss other manipulation (lip-sync, fully generated video, edited audio "
    "or context) and can be fooled by heavy compression, filters or small faces. Treat the "
    "score as one signal to weigh with other evidence, never as proof either way."
)
DEMO_CAVEAT = (
    " This server runs the **demo model**, trained in minutes on 23 short sample clips: "
    "expect many mistakes."
)
BATCH_COLUMNS = ["file", "verdict", "fake probability", "faces", "frames", "error"]


@dataclass(frozen=True)
class Face:
    """One analysed face, for the gallery."""

    frame_index: int
    timestamp_s: float
    fake_probability: float
    crop_jpeg: str | None

    @property
    def caption(self) -> str:
        return f"{percent(self.fake_probability)} fake · {self.timestamp_s:.1f} s"


def percent(probability: float) -> str:
    return f"{100 * probability:.0f}%"


def verdict_markdown(report: Mapping[str, Any]) -> str:
    """The banner: the verdict in words, the number behind it, and the caveat."""
    label = report["label"]
    lines = [f"## {HEADLINES[label]} ({label})", "", EXPLAINED[label], ""]
    if label != NO_FACE:
        threshold = report["threshold"]
        lines.append(
            f"**Fake probability {percent(report['fake_probability'])}** "
            f"({report['fake_probability']:.3f}); the server calls a video fake at "
            f"{threshold:.2f} or above. Combined over {report['faces_found']} face(s) in "
            f"{report['frames_analyzed']} frame(s) with the `{report['aggregation']}` rule."
        )
        if "label_reason" in report:  # schema 1.1
            lines.append(f"\nWhy `{label}`: {report['label_reason']}.")
        people = report.get("people", [])  # schema 1.1
        if report.get("verdict_person") is not None and len(people) > 1:
            lines.append(
                f"\n{len(people)} people were seen; the verdict is that of **person "
                f"{report['verdict_person']}**, the most suspicious of them."
            )
    else:
        lines.append(f"Frames analysed: {report['frames_analyzed']}.")
    flags = report.get("quality_flags", [])
    if flags:
        lines += ["", "**How much to trust this:**", *(f"- {flag['reason']}" for flag in flags)]
    caveat = CAVEAT + (DEMO_CAVEAT if "demo" in report["model"]["name"] else "")
    lines += ["", f"> {caveat}"]
    return "\n".join(lines)


def error_markdown(message: str) -> str:
    return f"## Could not analyse this video\n\n{message}"


def faces(report: Mapping[str, Any]) -> list[Face]:
    """Every analysed face, most suspicious first (ties: earlier first)."""
    found = [
        Face(frame["frame_index"], frame["timestamp_s"], face["fake_probability"],
             face.get("crop_jpeg"))
        for frame in report["frames"]
        for face in frame["faces"]
    ]  # fmt: skip
    return sorted(found, key=lambda face: (-face.fake_probability, face.timestamp_s))


def gallery(report: Mapping[str, Any]) -> list[tuple[np.ndarray, str]]:
    """(RGB crop, caption) per face with a crop, most suspicious first."""
    return [
        (decode_image_base64(face.crop_jpeg), face.caption)
        for face in faces(report)
        if face.crop_jpeg
    ]


def explanations(report: Mapping[str, Any]) -> list[tuple[np.ndarray, str]]:
    """(Grad-CAM overlay, caption) for the explained faces, most suspicious first."""
    return [
        (
            decode_image_base64(item["overlay_png"]),
            f"{percent(item['fake_probability'])} fake · {item['timestamp_s']:.1f} s",
        )
        for item in report.get("explanations", [])
    ]


def timeline(report: Mapping[str, Any]) -> dict[str, list]:
    """One line per person: each of their faces' time and fake probability (a server without
    people, schema 1.0: the mean of each frame's faces, as "all faces")."""
    points = [
        (frame["timestamp_s"], face["fake_probability"], person_name(face["person_id"]))
        for frame in report["frames"]
        for face in frame["faces"]
        if "person_id" in face
    ] or [
        (frame["timestamp_s"], mean_probability(frame["faces"]), "all faces")
        for frame in report["frames"]
        if frame["faces"]
    ]
    return {
        "time_s": [t for t, _, _ in points],
        "fake_probability": [p for _, p, _ in points],
        "person": [who for _, _, who in points],
    }


def person_name(person_id: int) -> str:
    return f"person {person_id}"


CARD_FACE_PX = 128  # each person's face on their card, square
LABEL_COLOURS = {"fake": "#c62828", "real": "#2e7d32", "uncertain": "#b26a00", "no_face": "#555"}
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def people_html(report: Mapping[str, Any]) -> str:
    """One card per person, side by side: their clearest face at CARD_FACE_PX, label and fake
    probability, when they are seen and the spans flagged fake. Everything from the server is
    escaped; a crop that is not plain base64 is left out."""
    people = report.get("people", [])
    if not people:
        return ""
    crops = representative_crops(report)
    cards = [_person_card(person, crops.get(person["person_id"])) for person in people]
    return (
        '<div class="people-panel"><div style="font-weight:600;margin:4px 0 8px">People: '
        "one card each</div>"
        '<div style="display:flex;flex-wrap:wrap;gap:12px">' + "".join(cards) + "</div></div>"
    )


def _person_card(person: Mapping[str, Any], crop: str | None) -> str:
    name = html.escape(person_name(person["person_id"]).capitalize())
    label = str(person["label"])
    colour = LABEL_COLOURS.get(label, "#555")
    size = f"width:{CARD_FACE_PX}px;height:{CARD_FACE_PX}px"
    if crop and _BASE64.fullmatch(crop):
        face = (f'<img src="data:image/jpeg;base64,{crop}" alt="{name}" '
                f'style="{size};object-fit:cover;border-radius:6px;display:block">')  # fmt: skip
    else:
        face = (f'<div style="{size};background:#eee;border-radius:6px;display:flex;'
                'align-items:center;justify-content:center;color:#777">no crop</div>')  # fmt: skip
    spans = ", ".join(f"{s['start_s']:.1f}-{s['end_s']:.1f} s" for s in person["segments"])
    flagged = f"flagged fake {spans}" if spans else "no span flagged"
    return (
        f'<div class="person-card" style="width:{CARD_FACE_PX + 40}px;border:1px solid #ddd;'
        'border-radius:8px;padding:8px;font-size:13px;line-height:1.35">'
        f'{face}<div style="font-weight:600;margin-top:6px">{name}</div>'
        f'<div><span style="color:{colour};font-weight:600">{html.escape(label)}</span> · '
        f"{percent(float(person['fake_probability']))} fake</div>"
        f"<div>seen {float(person['first_s']):.1f}-{float(person['last_s']):.1f} s</div>"
        f"<div>{html.escape(flagged)}</div></div>"
    )


def mean_probability(found: list[Mapping[str, Any]]) -> float:
    return float(np.mean([face["fake_probability"] for face in found]))


def model_markdown(report: Mapping[str, Any]) -> str:
    """Which model answered, on which engine, and where the time went."""
    model = report["model"]
    timing = report["timing_ms"]
    stages = " · ".join(f"{stage} {milliseconds / 1000:.2f} s" for stage, milliseconds in
                        timing.items())  # fmt: skip
    return (
        f"Model **{model['name']} {model['version']}** (checkpoint "
        f"`{model['checkpoint_sha256'][:12]}`), {model['inference_path']}, "
        f"faces by {model['detector']}. Time per stage: {stages}."
    )


CREDENTIAL_HEADLINES = {
    "none": "Content Credentials: none",
    "trusted": "Content Credentials: valid, trusted signer",
    "untrusted": "Content Credentials: valid, signer not confirmed",
    "tampered": "Content Credentials: the file was changed after signing",
    "invalid": "Content Credentials: not valid",
    "unreadable": "Content Credentials: present but unreadable",
    "unsupported": "Content Credentials: not looked for in this format",
}


def provenance_markdown(report: Mapping[str, Any]) -> str:
    """The provenance panel: Content Credentials and what the container says, apart from the
    verdict (schema 1.2; empty for older servers)."""
    provenance = report.get("provenance")
    if not provenance:
        return ""
    lines = ["### Provenance", "_Beside the verdict: no score uses it._", ""]
    credentials = provenance.get("content_credentials")
    if credentials:
        headline = CREDENTIAL_HEADLINES[credentials["status"]]
        lines.append(f"**{headline}.** {credentials['summary']}.")
        if credentials["status"] == "none":
            lines.append("Most videos carry none; it says nothing about whether this one is real.")
        if credentials["present"] and credentials.get("signer"):
            signer = credentials["signer"]
            lines.append(
                f"\n- Made with **{credentials.get('claim_generator') or 'an unnamed tool'}**, "
                f"signed by {signer.get('subject')} (issued by {signer.get('issuer')})"
                + (f" at {credentials['signed_at']}" if credentials.get("signed_at") else "")
            )
            for action in credentials.get("actions", []):
                made_by_ai = " — **AI-generated**" if action.get("ai_generated") else ""
                lines.append(
                    f"- {action['action']} by {action.get('software_agent') or 'an unnamed tool'}"
                    f"{made_by_ai}"
                )
    container = provenance.get("container")
    if container:
        streams = ", ".join(
            f"{stream['type']} {stream['codec']}" for stream in container.get("streams", [])
        )
        facts = [
            f"{container['format_long_name']}",
            f"encoder {container['encoder']}" if container.get("encoder") else "no encoder named",
            f"created {container['creation_time']}"
            if container.get("creation_time")
            else "no creation time",
            f"streams: {streams}",
        ]
        lines.append("\n**Container:** " + "; ".join(facts) + ".")
    return "\n".join(lines)


def batch_row(name: str, report: Mapping[str, Any] | None, error: str | None) -> list[Any]:
    """One row of the batch table (BATCH_COLUMNS)."""
    if report is None:
        return [name, "error", None, None, None, error]
    probability = report["fake_probability"]
    return [
        name,
        report["label"],
        None if probability is None else round(probability, 4),
        report["faces_found"],
        report["frames_analyzed"],
        "",
    ]


def write_csv(rows: Iterable[list[Any]], path: Path) -> Path:
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(BATCH_COLUMNS)
        writer.writerows(["" if value is None else value for value in row] for row in rows)
    return path
