"""The evidence report a newsroom can file: one analysis (a POST /explanations response) as a
PDF, and beside it a JSON sidecar holding the same record and the PDF's own SHA-256, so anyone
can later match the PDF to its record and the record to the file analysed.

PDF by fpdf2 (pure Python, no system libraries); the fonts are the DejaVu faces matplotlib
ships, so any file name or text prints; the timeline is drawn with matplotlib.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib
from fpdf import FPDF
from matplotlib.figure import Figure

from protocol.wire import NO_FACE

# The model card's limitations (README "Model card"), printed in every report.
LIMITATIONS = (
    "The score ranks how much the faces look face-swapped or blended; it is not proof either "
    "way, and no decision about a person should rest on it alone.",
    "It checks face swaps and blends only: lip-sync, fully generated video, edited audio or a "
    "misleading context are out of its scope.",
    "It judges only the faces the detector finds, frontal to three-quarter: profiles, covered "
    "and very small faces are not judged (see the quality flags).",
    "On people it never trained on, real videos score higher than on its training people; "
    "read the score with its calibration and the uncertain band.",
    "Heavy compression, filters and still photos moved in a video can fool it.",
)
SIDECAR_SUFFIX = ".json"
FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
# Each label in words, the same on the web page (ui/present.py) and in the report.
HEADLINES = {
    "fake": "Likely manipulated",
    "real": "No sign of face manipulation found",
    "uncertain": "Uncertain: too close to call",
    "no_face": "No face found: nothing to judge",
}


def evidence_record(
    video_name: str, video_bytes: bytes, analysis: Mapping[str, Any], analysed_at: str | None = None
) -> dict[str, Any]:
    """What the report states: the file (name, size, SHA-256), when, and the server's answer."""
    return {
        "file": {
            "name": video_name,
            "size_bytes": len(video_bytes),
            "sha256": hashlib.sha256(video_bytes).hexdigest(),
        },
        "analysed_at": analysed_at
        or datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "analysis": dict(analysis),
        "limitations": list(LIMITATIONS),
    }


def write_evidence_report(record: Mapping[str, Any], pdf_path: Path) -> Path:
    """The PDF at `pdf_path` and its sidecar `pdf_path` + ".json"; returns the sidecar."""
    pdf_bytes = render_pdf(record)
    pdf_path.write_bytes(pdf_bytes)
    sidecar = pdf_path.with_name(pdf_path.name + SIDECAR_SUFFIX)
    sidecar.write_text(
        json.dumps(
            {
                "record": record,
                "report_pdf": pdf_path.name,
                "report_pdf_sha256": hashlib.sha256(pdf_bytes).hexdigest(),
            },
            indent=1,
        )
        + "\n"
    )
    return sidecar


class _Report(FPDF):
    def __init__(self, title: str) -> None:
        super().__init__(format="A4")
        self.title_text = title
        self.add_font("DejaVu", "", str(FONT_DIR / "DejaVuSans.ttf"))
        self.add_font("DejaVu", "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))
        self.add_font("DejaVuMono", "", str(FONT_DIR / "DejaVuSansMono.ttf"))
        self.set_auto_page_break(True, margin=15)
        self.set_title(title)
        self.set_creator("deepfake-serve")

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("DejaVu", "", 7)
        self.cell(0, 5, f"{self.title_text} · page {self.page_no()}", align="C")

    def heading(self, text: str, size: int = 13) -> None:
        self.ln(2)
        self.set_font("DejaVu", "B", size)
        self.multi_cell(0, 7, text, new_x="LMARGIN", new_y="NEXT")
        self.set_font("DejaVu", "", 9)

    def line_of(self, text: str, mono: bool = False) -> None:
        self.set_font("DejaVuMono" if mono else "DejaVu", "", 8 if mono else 9)
        self.multi_cell(0, 4.6, text, new_x="LMARGIN", new_y="NEXT")
        self.set_font("DejaVu", "", 9)

    def field(self, name: str, value: Any, mono: bool = False) -> None:
        self.set_font("DejaVu", "B", 9)
        self.cell(42, 4.6, name)
        self.set_font("DejaVuMono" if mono else "DejaVu", "", 8 if mono else 9)
        self.multi_cell(0, 4.6, "—" if value is None else str(value), new_x="LMARGIN", new_y="NEXT")
        self.set_font("DejaVu", "", 9)

    def picture(self, png_or_jpeg: bytes, width_mm: float) -> None:
        self.image(io.BytesIO(png_or_jpeg), w=width_mm)


def render_pdf(record: Mapping[str, Any]) -> bytes:
    analysis = record["analysis"]
    pdf = _Report(f"Evidence report: {record['file']['name']}")
    pdf.add_page()
    pdf.heading("deepfake-serve evidence report", 16)
    _file_section(pdf, record)
    _model_section(pdf, analysis["model"])
    _verdict_section(pdf, analysis)
    if analysis["label"] != NO_FACE:
        pdf.heading("Fake probability over time, one line per person")
        pdf.picture(timeline_png(analysis), 170)
    _people_section(pdf, analysis)
    _explanations_section(pdf, analysis.get("explanations", []))
    _provenance_section(pdf, analysis.get("provenance"))
    pdf.heading("Limitations (from the model card)")
    for limitation in record["limitations"]:
        pdf.line_of(f"• {limitation}")
    pdf.ln(3)
    pdf.line_of(
        "The JSON sidecar beside this PDF holds the same record and this PDF's SHA-256; the "
        "file's SHA-256 above identifies the exact bytes analysed."
    )
    return bytes(pdf.output())


def _file_section(pdf: _Report, record: Mapping[str, Any]) -> None:
    pdf.heading("File")
    file = record["file"]
    pdf.field("Name", file["name"])
    pdf.field("Size", f"{file['size_bytes']:,} bytes")
    pdf.field("SHA-256", file["sha256"], mono=True)
    pdf.field("Analysed at (UTC)", record["analysed_at"])


def _model_section(pdf: _Report, model: Mapping[str, Any]) -> None:
    pdf.heading("Model")
    pdf.field("Name and version", f"{model['name']} {model['version']}")
    pdf.field("Checkpoint SHA-256", model["checkpoint_sha256"], mono=True)
    pdf.field(
        "Engine",
        f"{model['inference_path']} ({model['precision']}) on {model.get('device', 'cpu')}, "
        f"faces by {model['detector']}",
    )
    calibration = model.get("calibration") or {"method": "none"}
    pdf.field(
        "Calibration",
        "none: scores as trained"
        if calibration.get("method") == "none"
        else f"temperature {calibration['temperature']}: {calibration.get('fitted', '')}",
    )


def _verdict_section(pdf: _Report, analysis: Mapping[str, Any]) -> None:
    label = analysis["label"]
    pdf.heading(f"Verdict: {HEADLINES[label]} ({label})")
    if analysis["fake_probability"] is not None:
        pdf.field("Fake probability", f"{analysis['fake_probability']:.3f}")
    pdf.field("Threshold", f"{analysis['threshold']:.2f}, rule {analysis['aggregation']}")
    pdf.field("Why this label", analysis.get("label_reason"))
    pdf.field("Verdict person", analysis.get("verdict_person"))
    pdf.field(
        "Evidence", f"{analysis['faces_found']} faces in {analysis['frames_analyzed']} frames"
    )
    flags = analysis.get("quality_flags") or []
    pdf.field("Quality flags", "none" if not flags else f"{len(flags)}")
    for flag in flags:
        pdf.line_of(f"• {flag['flag']}: {flag['reason']}")


def _people_section(pdf: _Report, analysis: Mapping[str, Any]) -> None:
    people = analysis.get("people") or []
    if not people:
        return
    crops = representative_crops(analysis)
    for person in people:
        pdf.heading(f"Person {person['person_id']}", 11)
        crop = crops.get(person["person_id"])
        if crop:
            pdf.picture(base64.b64decode(crop), 28)
        pdf.field("Label", f"{person['label']} (fake probability {person['fake_probability']:.3f})")
        pdf.field(
            "Seen", f"{person['first_s']:.1f}-{person['last_s']:.1f} s, {person['faces']} faces"
        )
        spans = ", ".join(
            f"{s['start_s']:.1f}-{s['end_s']:.1f} s ({s['fake_probability']:.2f})"
            for s in person["segments"]
        )
        pdf.field("Flagged segments", spans or "none")


def representative_crops(analysis: Mapping[str, Any]) -> dict[int, str]:
    """person_id -> the base64 JPEG of their representative face, where the answer has crops
    (a request with `crops=true`)."""
    crops = {
        (frame["frame_index"], tuple(face["box"])): face.get("crop_jpeg")
        for frame in analysis["frames"]
        for face in frame["faces"]
    }
    found = {}
    for person in analysis.get("people", []):
        shown = person["representative"]
        crop = crops.get((shown["frame_index"], tuple(shown["box"])))
        if crop:
            found[person["person_id"]] = crop
    return found


def _explanations_section(pdf: _Report, explanations: list[Mapping[str, Any]]) -> None:
    if not explanations:
        return
    pdf.heading("Most suspicious faces: where the model saw evidence (Grad-CAM)")
    for item in explanations:
        pdf.picture(base64.b64decode(item["overlay_png"]), 45)
        pdf.line_of(
            f"frame {item['frame_index']} at {item['timestamp_s']:.2f} s: fake probability "
            f"{item['fake_probability']:.3f} (red: strongest evidence)"
        )


def _provenance_section(pdf: _Report, provenance: Mapping[str, Any] | None) -> None:
    pdf.heading("Provenance (beside the verdict: no score uses it)")
    if provenance is None:
        pdf.line_of("The server reported no provenance for this file.")
        return
    _credentials_lines(pdf, provenance.get("content_credentials"))
    if provenance.get("container"):
        _container_lines(pdf, provenance["container"])


def _credentials_lines(pdf: _Report, credentials: Mapping[str, Any] | None) -> None:
    if credentials is None:
        pdf.field("Content Credentials", "not read by this server")
        return
    pdf.field("Content Credentials", f"{credentials['status']}: {credentials['summary']}")
    signer = credentials.get("signer")
    if not signer:  # none, or present but unreadable: nothing more to state
        return
    pdf.field("Claim generator", credentials.get("claim_generator"))
    pdf.field("Signer", f"{signer.get('subject')} (issued by {signer.get('issuer')})")
    pdf.field("Signed at", credentials.get("signed_at") or "no trusted timestamp")
    pdf.field("AI-generated", "yes" if credentials.get("ai_generated") else "not claimed")
    for action in credentials.get("actions", []):
        source = action.get("digital_source_type")
        agent = action.get("software_agent") or "an unnamed tool"
        pdf.line_of(f"• {action['action']} by {agent}" + (f" ({source})" if source else ""))
    for ingredient in credentials.get("ingredients", []):
        pdf.line_of(f"• ingredient: {ingredient.get('title')} ({ingredient.get('relationship')})")


def _container_lines(pdf: _Report, container: Mapping[str, Any]) -> None:
    pdf.field("Container", container["format_long_name"])
    pdf.field("Encoder", container.get("encoder"))
    pdf.field("Created", container.get("creation_time") or "not stated")
    if container.get("movie_created") or container.get("movie_modified"):
        pdf.field(
            "Movie header",
            f"created {container.get('movie_created') or 'not set'}, "
            f"modified {container.get('movie_modified') or 'not set'}",
        )
    pdf.field("Brand", container.get("major_brand"))
    for stream in container["streams"]:
        size = f" {stream['width']}x{stream['height']}" if stream["type"] == "video" else ""
        pdf.line_of(f"• stream {stream['index']}: {stream['type']} {stream['codec']}{size}")
    for edits in container.get("edit_lists", []):
        shown = "; ".join(
            "a pause"
            if entry["media_time_s"] == -1
            else f"{entry['segment_s']} s shown from {entry['media_time_s']} s of its media"
            for entry in edits["entries"]
        )
        pdf.line_of(f"• track {edits['track']} edit list: {shown}")


def timeline_png(analysis: Mapping[str, Any]) -> bytes:
    """Each person's faces' fake probability against time, the threshold dashed."""
    figure = Figure(figsize=(7, 2.4), dpi=120)
    axes = figure.subplots()
    by_person: dict[Any, list[tuple[float, float]]] = {}
    for frame in analysis["frames"]:
        for face in frame["faces"]:
            key = face.get("person_id", "all faces")
            by_person.setdefault(key, []).append((frame["timestamp_s"], face["fake_probability"]))
    for person, points in by_person.items():
        axes.plot(*zip(*points, strict=True), marker="o", markersize=3, label=f"person {person}")
    axes.axhline(analysis["threshold"], color="grey", linestyle="--", linewidth=0.8)
    axes.set(xlabel="time in the video (s)", ylabel="fake probability", ylim=(0, 1))
    axes.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
