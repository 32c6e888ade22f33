"""What a request sent, read and checked: the video from TorchServe's request row (raw body,
multipart field or KServe v1 instance) and the options from `X-Deepfake-*` headers or multipart
text fields (TorchServe 0.12 does not pass a POST's query string to the handler), bounded by
the server's configuration. Pure Python, no TorchServe: the handler maps `RequestError` to its
status.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Mapping
from typing import Any

from model.config import ServiceConfig
from model.service import AnalysisRequest
from protocol.wire import (
    AGGREGATIONS,
    FALSE_WORDS,
    MAX_OPTION_CHARS,
    OPTION_HEADER_PREFIX,
    OPTIONS,
    TRUE_WORDS,
    VIDEO_FIELDS,
)


class RequestError(Exception):
    """A request the server will not run; `status` is the HTTP status, `error` a short kind."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


def analysis_request(
    values: Mapping[str, Any], headers: Mapping[str, str], config: ServiceConfig, explain: bool
) -> AnalysisRequest:
    """Validate the options a request sent (multipart text fields in `values`, `X-Deepfake-*`
    in `headers`; a field wins over a header) against the server's bounds in `config`."""
    asked = {
        name.lower()[len(OPTION_HEADER_PREFIX) :].replace("-", "_"): value
        for name, value in headers.items()
        if isinstance(name, str) and name.lower().startswith(OPTION_HEADER_PREFIX)
    }
    asked.update({name: value for name, value in values.items() if name not in VIDEO_FIELDS})
    unknown = sorted(set(asked) - set(OPTIONS))
    if unknown:
        known = "; ".join(f"{name}: {help}" for name, help in OPTIONS.items())
        raise RequestError(400, "unknown_option", f"unknown option(s) {unknown}; known: {known}")
    text = {name: _as_text(name, value) for name, value in asked.items()}

    sampling = config.sampling
    if "frames" in text and "interval" in text:
        raise RequestError(400, "invalid_option", "ask for frames or interval, not both")
    if "frames" in text:
        frames = _bounded_int(text, "frames", 1, sampling.max_frames)
        sampling = dataclasses.replace(sampling, num_frames=frames)
    if "interval" in text:
        interval = _bounded_int(text, "interval", 1, config.requests.max_interval)
        # Exactly every N-th frame, as asked: no minimum for short clips.
        sampling = dataclasses.replace(sampling, interval=interval, num_frames=None, min_frames=1)
    aggregation = text.get("aggregation", config.verdict.aggregation)
    if aggregation not in AGGREGATIONS:
        raise RequestError(
            400, "invalid_option", f"aggregation {aggregation!r} is not one of {list(AGGREGATIONS)}"
        )
    explain_faces = config.explanations.faces
    if "explain_faces" in text:
        explain_faces = _bounded_int(text, "explain_faces", 1, config.explanations.max_faces)
    verdict = dataclasses.replace(config.verdict, aggregation=aggregation)
    return AnalysisRequest(
        config=dataclasses.replace(config, sampling=sampling, verdict=verdict),
        include_crops=_flag(text, "crops"),
        explain_faces=explain_faces if explain else 0,
    )


# Declared types that cannot be a video file: refused even when the bytes would decode, so a
# client that mislabels its upload learns it from the answer rather than by accident.
REFUSED_CONTENT_TYPES = ("application/json", "text/", "image/", "audio/")


def video_bytes(
    values: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> bytes | bytearray:
    """The uploaded video from TorchServe's request row, or a RequestError saying how to send it."""
    declared = next(
        (str(v) for k, v in (headers or {}).items() if str(k).lower() == "content-type"), ""
    )
    kind = declared.split(";", 1)[0].strip().lower()
    if kind.startswith(REFUSED_CONTENT_TYPES):
        raise RequestError(
            415,
            "unsupported_media_type",
            f"Content-Type {kind} is not a video: send the file's bytes as "
            "application/octet-stream (or video/mp4 etc.), or as multipart field 'data'",
        )
    for name in VIDEO_FIELDS:
        value = values.get(name)
        if value is None:
            continue
        if isinstance(value, (dict, list)):
            raise RequestError(
                415,
                "unsupported_media_type",
                "the body was sent as JSON; send the video file itself "
                "(Content-Type: application/octet-stream, or multipart field 'data')",
            )
        if isinstance(value, str):
            raise RequestError(
                415,
                "unsupported_media_type",
                "the body was sent as text; send the video file's bytes "
                "(Content-Type: application/octet-stream, or multipart field 'data')",
            )
        if len(value) == 0:
            raise RequestError(400, "empty_body", "the uploaded video is empty (0 bytes)")
        return value
    fields = sorted(name for name in values if name not in OPTIONS)
    named = f"; got field(s) {fields}" if fields else ""
    raise RequestError(
        400,
        "missing_video",
        "no video in the request: send it as the raw body (curl -T video.mp4 URL) or as "
        f"multipart field 'data' (curl -F data=@video.mp4 URL){named}",
    )


V1_HOW_TO = (
    'a KServe v1 request is a JSON body {"instances": [{"data": "<the video, base64>"}]}, '
    'one video per request; options may go in the instance, e.g. "frames": 8'
)


def kserve_v1_instance(values: Mapping[str, Any]) -> dict[str, Any] | None:
    """The instance of a KServe v1 body (`POST /v1/models/deepfake:predict` with
    {"instances": [{"data": base64, ...options}]}) with its video decoded to bytes; None when
    the row is not a v1 body. TorchServe hands a JSON body over already parsed, as "body"."""
    body = values.get("body")
    if not (isinstance(body, Mapping) and "instances" in body):
        return None
    instances = body["instances"]
    if not isinstance(instances, list) or len(instances) != 1:
        count = len(instances) if isinstance(instances, list) else "no list of"
        raise RequestError(400, "invalid_v1_request", f"got {count} instances; {V1_HOW_TO}")
    [instance] = instances
    if not isinstance(instance, Mapping) or not isinstance(instance.get("data"), str):
        raise RequestError(400, "missing_video", f"the instance has no base64 'data'; {V1_HOW_TO}")
    return {**instance, "data": _base64_video(instance["data"])}


def _base64_video(text: str) -> bytes:
    """Base64 text as bytes; whitespace (line-wrapped base64) is ignored."""
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise RequestError(
            400,
            "invalid_base64",
            f"the instance's 'data' is not valid base64 ({error}): send the video file's bytes "
            "base64-encoded (base64 -w0 video.mp4)",
        ) from error


def _as_text(name: str, value: Any) -> str:
    if isinstance(value, bool):  # JSON options of a v1 instance
        value = str(value).lower()
    elif isinstance(value, (int, float)):
        value = str(value)
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as error:
            raise RequestError(400, "invalid_option", f"option {name} is not text") from error
    if not isinstance(value, str) or len(value) > MAX_OPTION_CHARS:
        raise RequestError(400, "invalid_option", f"option {name} must be a short text value")
    return value.strip()


def _bounded_int(text: Mapping[str, str], name: str, low: int, high: int) -> int:
    try:
        number = int(text[name])
    except ValueError as error:
        raise RequestError(
            400, "invalid_option", f"{name} must be a whole number, got {text[name]!r}"
        ) from error
    if not low <= number <= high:
        raise RequestError(
            400, "invalid_option", f"{name} must lie in {low}..{high} on this server, got {number}"
        )
    return number


def _flag(text: Mapping[str, str], name: str) -> bool:
    value = text.get(name, "false").lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise RequestError(400, "invalid_option", f"{name} must be true or false, got {value!r}")
