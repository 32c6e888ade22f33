"""The exceptions the pipeline raises; the handler maps each to an HTTP status."""


class DeepfakeServeError(Exception):
    """Base of every error this project raises on purpose."""


class VideoInputError(DeepfakeServeError, ValueError):
    """The input is not a video the pipeline can read; the message says what is wrong.

    Raised for empty input, non-video bytes, images, audio-only files, truncated or corrupt
    containers, and streams with no decodable frame. A client error: the upload must change.
    """


class UnsupportedFormatError(VideoInputError):
    """The upload's first bytes are not a container the API accepts (model/formats.py); it was
    refused before FFmpeg parsed it. `detected` says what it looks like instead."""

    def __init__(self, message: str, detected: str) -> None:
        super().__init__(message)
        self.detected = detected


class VideoLimitError(VideoInputError):
    """A readable video over a configured limit (pixels, duration, frames, decode time),
    refused before or while decoding so one upload cannot hold a worker for long.
    `code` names the limit kind for the HTTP error body."""

    def __init__(self, message: str, code: str = "video_too_large") -> None:
        super().__init__(message)
        self.code = code

    @property
    def status(self) -> int:
        """413 for a video too large to take; 422 for one whose decoding ran past a limit
        (decode_timeout, decode_cpu_limit, decode_memory_limit)."""
        return 422 if self.code.startswith("decode") else 413


class DecoderCrashedError(VideoInputError):
    """The sandboxed decoder died on this file (a signal, or it broke the protocol): the file
    is damaged or hostile. The worker is unaffected; the answer is 422 `decoder_crashed`."""


class CheckpointError(DeepfakeServeError):
    """A checkpoint or its settings file is missing, malformed, or does not fit the network."""
