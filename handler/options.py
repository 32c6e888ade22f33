"""What a request may ask for and what the server allows: the `deepfake:` block of the model
config YAML (ServingConfig) and the per-request options, read from `X-Deepfake-*` headers or
multipart text fields (TorchServe 0.12 does not pass a POST's query string to the handler).

Pure Python, no TorchServe: the handler calls these and maps `RequestError` to its status.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from model.aggregation import AGGREGATIONS
from model.faces import DetectorConfig
from model.pipeline import PipelineConfig
from model.runtime import candidate_paths
from model.video import DEFAULT_LIMITS, SamplingConfig, VideoLimits

# Where TorchServe puts the upload: the raw body, or the multipart form field named "data".
VIDEO_FIELDS = ("body", "data")
# Request options: a header (`X-Deepfake-Frames: 8`) or a multipart text field (`-F frames=8`).
OPTION_HEADER_PREFIX = "x-deepfake-"
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


class RequestError(Exception):
    """A request the server will not run; `status` is the HTTP status, `error` a short kind."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


@dataclass(frozen=True)
class ServingConfig:
    """The server's pipeline defaults and the limits on what one request may ask for."""

    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    # model/runtime.py: "auto" (by the CPU), one path, or a comma-separated list timed at start
    inference_path: str = "auto"
    torch_threads: int | None = None  # None: cores shared evenly among the running workers
    # glibc's mmap threshold at 1 MB (model/memory.py), with an OpenVINO path only
    return_large_buffers_to_os: bool = True
    explain_faces: int = 3  # faces explained by /explanations unless the request asks otherwise
    max_explain_faces: int = 8
    max_interval: int = 1000
    limits: VideoLimits = field(default_factory=VideoLimits)  # per uploaded video

    def __post_init__(self) -> None:
        candidate_paths(self.inference_path)  # a ValueError naming the choices if unknown

    @classmethod
    def from_yaml(cls, model_yaml: Mapping[str, Any] | None) -> ServingConfig:
        """Read the `deepfake:` block of the model config; missing keys keep their defaults."""
        block = dict((model_yaml or {}).get("deepfake") or {})
        defaults = PipelineConfig()
        sampling = SamplingConfig(
            interval=int(block.pop("interval", defaults.sampling.interval)),
            num_frames=_optional_int(block.pop("num_frames", None)),
            max_frames=int(block.pop("max_frames", defaults.sampling.max_frames)),
        )
        detector = DetectorConfig(
            detect_width=int(block.pop("detect_width", defaults.detector.detect_width)),
            upsample=int(block.pop("upsample", defaults.detector.upsample)),
            retry_upsample=_optional_int(
                block.pop("retry_upsample", defaults.detector.retry_upsample)
            ),
            max_faces=int(block.pop("max_faces", defaults.detector.max_faces)),
            grey=bool(block.pop("detect_grey", defaults.detector.grey)),
        )
        pipeline = PipelineConfig(
            sampling=sampling,
            detector=detector,
            aggregation=str(block.pop("aggregation", defaults.aggregation)),
            threshold=float(block.pop("threshold", defaults.threshold)),
            batch_size=int(block.pop("batch_size", defaults.batch_size)),
            skip_unsampled_frames=bool(
                block.pop("skip_unsampled_frames", defaults.skip_unsampled_frames)
            ),
            overlap_stages=bool(block.pop("overlap_stages", defaults.overlap_stages)),
        )
        threads = block.pop("torch_threads", "auto")
        config = cls(
            pipeline=pipeline,
            inference_path=str(block.pop("inference_path", cls.inference_path)),
            torch_threads=None if threads in (None, "auto") else int(threads),
            return_large_buffers_to_os=bool(
                block.pop("return_large_buffers_to_os", cls.return_large_buffers_to_os)
            ),
            explain_faces=int(block.pop("explain_faces", cls.explain_faces)),
            max_explain_faces=int(block.pop("max_explain_faces", cls.max_explain_faces)),
            max_interval=int(block.pop("max_interval", cls.max_interval)),
            limits=VideoLimits(
                **{  # each limit keeps its default's type (int or float); null: no limit
                    name: None
                    if (value := block.pop(name, default)) is None
                    else type(default)(value)
                    for name, default in dataclasses.asdict(DEFAULT_LIMITS).items()
                }
            ),
        )
        if block:
            raise ValueError(f"unknown keys in the model config's deepfake block: {sorted(block)}")
        return config


@dataclass(frozen=True)
class RequestOptions:
    """One request's pipeline settings after validation against the server's limits."""

    pipeline: PipelineConfig
    include_crops: bool
    explain_faces: int


OPTION_HELP = {
    "frames": "analyse N evenly spaced frames (1..max_frames)",
    "interval": "analyse every N-th frame (1..max_interval)",
    "aggregation": f"per-video rule, one of {sorted(AGGREGATIONS)}",
    "crops": "true to include each face crop as base64 JPEG",
    "explain_faces": "faces to explain on /explanations (1..max_explain_faces)",
}


def request_options(
    values: Mapping[str, str], headers: Mapping[str, str], config: ServingConfig
) -> RequestOptions:
    """Validate the options a request sent (multipart text fields in `values`, `X-Deepfake-*`
    in `headers`; a field wins over a header) against the server's limits."""
    asked = {
        name.lower()[len(OPTION_HEADER_PREFIX) :].replace("-", "_"): value
        for name, value in headers.items()
        if isinstance(name, str) and name.lower().startswith(OPTION_HEADER_PREFIX)
    }
    asked.update({name: value for name, value in values.items() if name not in VIDEO_FIELDS})
    unknown = sorted(set(asked) - set(OPTION_HELP))
    if unknown:
        known = "; ".join(f"{name}: {help}" for name, help in OPTION_HELP.items())
        raise RequestError(400, "unknown_option", f"unknown option(s) {unknown}; known: {known}")
    text = {name: _as_text(name, value) for name, value in asked.items()}

    defaults = config.pipeline
    sampling = defaults.sampling
    if "frames" in text and "interval" in text:
        raise RequestError(400, "invalid_option", "ask for frames or interval, not both")
    if "frames" in text:
        frames = _bounded_int(text, "frames", 1, sampling.max_frames)
        sampling = dataclasses.replace(sampling, num_frames=frames)
    if "interval" in text:
        interval = _bounded_int(text, "interval", 1, config.max_interval)
        sampling = dataclasses.replace(sampling, interval=interval, num_frames=None)
    aggregation = text.get("aggregation", defaults.aggregation)
    if aggregation not in AGGREGATIONS:
        raise RequestError(
            400,
            "invalid_option",
            f"aggregation {aggregation!r} is not one of {sorted(AGGREGATIONS)}",
        )
    explain_faces = config.explain_faces
    if "explain_faces" in text:
        explain_faces = _bounded_int(text, "explain_faces", 1, config.max_explain_faces)
    return RequestOptions(
        pipeline=dataclasses.replace(defaults, sampling=sampling, aggregation=aggregation),
        include_crops=_flag(text, "crops"),
        explain_faces=explain_faces,
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
    fields = sorted(name for name in values if name not in OPTION_HELP)
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
    if not isinstance(value, str) or len(value) > 64:
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


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)
