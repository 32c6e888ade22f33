"""What the worker and its clients agree on, with no third-party import: the response schema's
version and labels, the request options and their bounds, how options travel, which files are
videos, where the servers listen, the archive's record, and the results.txt line.

Both sides import this module: the worker (handler/, model/) and the clients (client/, ui/,
the container health check), which must start without torch, dlib or PyAV.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SCHEMA_VERSION = "1.3"  # fields are only added within a major version (docs/api.md)

FAKE, REAL, UNCERTAIN, NO_FACE = "fake", "real", "uncertain", "no_face"
LABELS = (FAKE, REAL, UNCERTAIN, NO_FACE)  # uncertain: schema 1.1
# provenance.content_credentials.status (schema 1.2, docs/api.md): none, trusted, untrusted,
# tampered, invalid, unreadable, unsupported.
CREDENTIAL_STATUSES = ("none", "trusted", "untrusted", "tampered", "invalid", "unreadable",
                       "unsupported")  # fmt: skip
# The per-video rules (model/aggregation.py, model/verdict.py): the most suspicious person, or
# a rule over every face of the video.
PERSON_RULE = "person_max"
FACE_RULES = ("mean", "confident", "face_max")
AGGREGATIONS = (PERSON_RULE, *FACE_RULES)

MODEL_NAME = "deepfake"
HOST = "127.0.0.1"
INFERENCE_URL = f"http://{HOST}:8080"
MANAGEMENT_URL = f"http://{HOST}:8081"
METRICS_URL = f"http://{HOST}:8082"
KEY_FILE = "key_file.json"  # written by TorchServe where it starts (token authorization)

# Suffixes collected from folders; a file named on its own is read whatever its suffix.
VIDEO_SUFFIXES = frozenset(
    {
        ".mp4",
        ".m4v",
        ".mov",
        ".mkv",
        ".webm",
        ".avi",
        ".wmv",
        ".flv",
        ".mpg",
        ".mpeg",
        ".ts",
        ".3gp",
    }
)

# Where TorchServe puts the upload: the raw body, or the multipart form field named "data".
VIDEO_FIELDS = ("body", "data")
# Request options: a header (`X-Deepfake-Frames: 8`) or a multipart text field (`-F frames=8`).
OPTION_HEADER_PREFIX = "x-deepfake-"
# Each option and what it takes; upper bounds named here are the server's configuration.
OPTIONS = {
    "frames": "analyse N evenly spaced frames (1..max_frames)",
    "interval": "analyse every N-th frame (1..max_interval)",
    "aggregation": f"per-video rule, one of {list(AGGREGATIONS)}",
    "crops": "true to include each face crop as base64 JPEG",
    "explain_faces": "faces to explain on /explanations (1..max_faces of explanations)",
}
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
MAX_OPTION_CHARS = 64

ARCHIVE_INFO = "archive.json"  # in the .mar: checkpoint sha256, settings, int8 record, commit


def option_headers(options: Mapping[str, Any]) -> dict[str, str]:
    """{"frames": 8} -> {"X-Deepfake-Frames": "8"}: how a client sends options."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; known: {sorted(OPTIONS)}")
    return {
        OPTION_HEADER_PREFIX.title() + name.replace("_", "-").title(): str(value)
        for name, value in options.items()
    }


def error_body(status: int, error: str, message: str) -> dict[str, Any]:
    """The body of every failed request: the HTTP status, an error kind, what to change."""
    return {"schema_version": SCHEMA_VERSION, "status": status, "error": error, "message": message}


def result_line(
    name: str, label: str | None, fake_probability: float | None, error: str = ""
) -> str:
    """One results.txt line, the same from `training.infer` and the client:
    `<name> <fake probability> <label>`, `<name> no_face no_face` or `<name> error: <why>`."""
    if label is None:
        return f"{name} error: {error}"
    if label == NO_FACE or fake_probability is None:
        return f"{name} {NO_FACE} {NO_FACE}"
    return f"{name} {fake_probability:.4f} {label}"


def find_videos(inputs: Iterable[Path]) -> list[Path]:
    """Files as given; folders walked for files with a video suffix, sorted."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = (p for p in item.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
            paths.extend(sorted(p for p in found if p.is_file()))
        else:
            paths.append(item)
    return paths


def person_result_name(name: str, person_id: int) -> str:
    """The name on a person's results.txt line, after its video's line:
    `<video>#person-<id> <fake probability> <label>` (schema 1.1)."""
    return f"{name}#person-{person_id}"


def write_archive_info(folder: Path, info: Mapping[str, Any]) -> Path:
    path = Path(folder) / ARCHIVE_INFO
    path.write_text(json.dumps(info, indent=2) + "\n")
    return path


def read_archive_info(folder: Path) -> dict[str, Any]:
    """The archive's record, from an unpacked .mar (a worker's model_dir)."""
    return json.loads((Path(folder) / ARCHIVE_INFO).read_text())
